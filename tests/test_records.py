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


def test_v1_regenerated_with_a_change_writes_v2_naming_everything(v1, tmp_path):
    out = v1 / "seed.png"                               # beside the model: --from finds it
    assert ddpm_run("--from", v1 / "ddim_sheet.png", "--seed", "8", "--out", out, "-q").exit_code == 0
    record = read_record(out)
    assert record["format"] == "ddpm-edge-params/2" and record["seed"] == 8
    assert {k: record[k] for k in ("sampler", "steps", "eta", "spacing", "backend", "precision")} == \
        {"sampler": "ddim", "steps": 5, "eta": 0.0, "spacing": "uniform", "backend": "onnxruntime",
         "precision": "fp32"}
    again = tmp_path / "again.png"                      # a /2 record regenerates itself, still /2
    assert ddpm_run("--from", out, "--out", again, "-q").exit_code == 0
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize("options", [("--sampler", "dpmpp-2m-sde", "--steps", "6", "--spacing", "karras"),
                                     ("--sampler", "ddim", "--steps", "6", "--eta", "0.7", "--spacing", "logsnr")])
def test_v2_records_reproduce_every_solver_setting(v1, tmp_path, options):
    out, again = v1 / "a.png", tmp_path / "b.png"
    result = ddpm_run("--engine", v1 / "tiny.onnx", "-n", "3", "--seed", "5", *options, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"{options[1]}" in result.stderr and "6 steps" in result.stderr        # the summary names the solver
    record = read_record(out)
    assert record["format"] == "ddpm-edge-params/2" and record["sampler"] == options[1]
    assert record["spacing"] == options[-1] and record["eta"] == (0.7 if "--eta" in options else 0.0)
    assert ddpm_run("--from", out, "--out", again, "-q").exit_code == 0
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "c.png"                          # a new sampler drops the recorded steps, eta, spacing
    assert ddpm_run("--from", out, "--sampler", "dpmpp-2m", "--out", other, "-q").exit_code == 0
    assert {k: read_record(other)[k] for k in ("sampler", "steps", "eta", "spacing")} == \
        {"sampler": "dpmpp-2m", "steps": 20, "eta": 0.0, "spacing": "uniform"}


def test_unknown_record_format_is_refused_in_one_line(tmp_path):
    from PIL import Image, PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_itxt("ddpm-edge", '{"format":"ddpm-edge-params/9"}')
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png", pnginfo=info)
    result = ddpm_run("--from", tmp_path / "x.png", "--out", tmp_path / "y.png")
    assert result.exit_code == 2 and "unsupported ddpm-edge parameter format 'ddpm-edge-params/9'" in result.stderr
    assert not (tmp_path / "y.png").exists()


def test_gpu_loop_refuses_other_solvers_before_needing_a_gpu(v1, tmp_path):
    for options in (("--sampler", "dpmpp-2m-sde"), ("--from", v1 / "ddim_sheet.png", "--sampler", "dpmpp-3m-sde")):
        result = ddpm_run("--engine", v1 / "tiny.onnx", *options, "--gpu-loop", "--device", "cpu",
                          "--out", tmp_path / "x.png")
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.stderr
        assert "--gpu-loop runs only the ddpm and ddim steps" in lines[0] and "dpmpp-" in lines[0]
    assert not (tmp_path / "x.png").exists()


def test_batch_records_the_unets_backend_and_precision(v1, tmp_path):
    from ddpm_edge.runtime.api import GenerationParams, SpriteGenerator
    from ddpm_edge.runtime.assets.outputs import Targets, write_outputs
    gen = SpriteGenerator.load(v1 / "tiny.onnx", device="cpu")
    gen.unet.backend, gen.unet.precision = "openvino", "bf16"      # what a lowprec backend says of itself
    batch = gen.generate_batch(GenerationParams(2, sampler="dpmpp-2m", steps=3, seed=1))
    write_outputs(batch, Targets(sheet=tmp_path / "s.png"))
    record = read_record(tmp_path / "s.png")
    assert (record["backend"], record["precision"], record["sampler"], record["steps"]) == \
        ("openvino", "bf16", "dpmpp-2m", 3)


def test_from_a_record_loads_its_backend_and_precision_unless_told(v1, tmp_path, monkeypatch):
    """A record is regenerated on the engine it names (OpenVINO bf16 here; /1 records: onnxruntime fp32), so
    `auto` never moves it to another engine; options given on the command line win."""
    from ddpm_edge.runtime import api
    from ddpm_edge.runtime.assets.outputs import Targets
    out = v1 / "a.png"
    assert ddpm_run("--engine", v1 / "tiny.onnx", "-n", "2", "--sampler", "ddim", "--steps", "3", "--seed", "1",
                    "--out", out, "-q").exit_code == 0
    seen = []
    real_load = api.SpriteGenerator.load

    def load(path=None, **options):
        seen.append({k: options[k] for k in ("backend", "precision") if k in options})
        return real_load(path, **{k: v for k, v in options.items() if k not in ("backend", "precision")})
    monkeypatch.setattr(api.SpriteGenerator, "load", load)
    monkeypatch.setattr(api, "read_record", lambda path: {**read_record(path), "backend": "openvino",
                                                          "precision": "bf16"})
    api.render(Targets(sheet=tmp_path / "b.png"), source=out)
    api.render(Targets(sheet=tmp_path / "c.png"), source=out, load_options={"backend": "onnxruntime"})
    monkeypatch.setattr(api, "read_record", read_record)
    api.render(Targets(sheet=tmp_path / "d.png"), source=out)
    api.render(Targets(sheet=tmp_path / "e.png"), source=v1 / "ddim_sheet.png")
    pinned = {"backend": "onnxruntime", "precision": "fp32"}
    assert seen == [{"backend": "openvino", "precision": "bf16"}, {"backend": "onnxruntime"}, pinned, pinned]
