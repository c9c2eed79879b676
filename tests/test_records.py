"""PNG records across formats: files written before "ddpm-edge-params/2" (tests/data/records_v1, made by
ddpm-run 0.1.0 with the tiny model beside them, see its MAKE.md) still regenerate byte for byte with
`--from` and nothing overridden; every other regeneration writes /2, which names all parameters."""
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ddpm_edge.runtime.assets.records import read_record
from ddpm_edge.runtime.cli import app

V1 = Path(__file__).parent / "data" / "records_v1"


def ddpm_run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def v1(tmp_path) -> Path:
    folder = tmp_path / "v1"
    shutil.copytree(V1, folder)
    return folder


@pytest.mark.parametrize("sheet, extra", [
    ("ddim_sheet.png", ()),
    ("ddpm_sheet.png", ()),
    ("guided_sheet.png", ()),
])
def test_v1_sheet_regenerates_byte_for_byte(v1, tmp_path, sheet, extra):
    assert read_record(v1 / sheet)["format"] == "ddpm-edge-params/1"
    again = tmp_path / "again.png"
    result = ddpm_run("--from", v1 / sheet, "--out", again, "-q", *extra)
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == (V1 / sheet).read_bytes()


def test_v1_atlas_each_and_animation_regenerate_byte_for_byte(v1, tmp_path):
    out = tmp_path / "ddim_sheet.png"
    result = ddpm_run("--from", v1 / "ddim_sheet.png", "--out", out, "--atlas", "--each", tmp_path / "each", "-q")
    assert result.exit_code == 0, result.output
    # the atlas is not a record: it is rewritten in today's layout (frames prefixed by the sheet's stem,
    # with pivot), the same rectangles in the same order as the one written by 0.1.0
    old, new = (json.loads(p.read_text()) for p in (V1 / "ddim_sheet.json", out.with_suffix(".json")))
    assert [(f"ddim_sheet/{name}", e["frame"]) for name, e in old["frames"].items()] == \
        [(name, e["frame"]) for name, e in new["frames"].items()]
    assert new["meta"]["size"] == old["meta"]["size"] and new["meta"]["image"] == old["meta"]["image"]
    for sprite in sorted((V1 / "each").iterdir()):
        assert (tmp_path / "each" / sprite.name).read_bytes() == sprite.read_bytes(), sprite.name
    anim = tmp_path / "anim.png"
    result = ddpm_run("--from", v1 / "guided_sheet.png", "--out", tmp_path / "g.png", "--gif", anim,
                      "--gif-every", "2", "-q")
    assert result.exit_code == 0, result.output
    assert anim.read_bytes() == (V1 / "anim.png").read_bytes()
    assert (tmp_path / "g.png").read_bytes() == (V1 / "guided_sheet.png").read_bytes()
