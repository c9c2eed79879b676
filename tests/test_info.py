"""ddpm-info describes a model without running it; every console script answers --version; ddpm-run's
--context help names the shipped model's classes."""
import json
import subprocess
import tomllib

import onnx
import pytest

from ddpm_edge.runtime import __version__
from ddpm_edge.runtime.info import describe, onnx_metadata, render, shipped_classes

from conftest import ROOT, script

SHIPPED = ROOT / "weights" / "unet.onnx"


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


def test_describe_the_shipped_model():
    info = describe()
    meta = {p.key: p.value for p in onnx.load(SHIPPED).metadata_props}
    assert info["classes"] == json.loads(meta["context_names"]) == ["face", "person", "animal", "food", "object"]
    assert info["shapes"] == {"x": ["N", 3, 16, 16], "t": ["N", 1], "c": ["N", 5], "eps": ["N", 3, 16, 16]}
    assert info["schedule"] == {"T": 500, "beta1": 1e-4, "beta2": 0.02}
    assert (info["backend"], info["precision"]) == ("onnxruntime", "fp32")
    assert info["provenance"]["source_sha256"] == meta["source_sha256"]
    assert info["provenance"]["shortcut"] == "learned"
    assert info["onnx"] == {"ir_version": 8, "opsets": {"ai.onnx": 15}, "producer": f"ddpm-edge {meta['version']}"}
    import hashlib
    assert info["sha256"] == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    text = render(info)
    assert "face, person, animal, food, object" in text and info["sha256"] in text


def test_ddpm_info_command(small_onnx):
    result = run(script("ddpm-info"), small_onnx)
    assert result.returncode == 0, result.stderr
    assert "hero, non-hero, food, spell, side-facing" in result.stdout      # the course model's classes
    result = run(script("ddpm-info"), small_onnx, "--json")
    assert json.loads(result.stdout)["provenance"]["shortcut"] == "seed:0"


def test_ddpm_info_refuses_in_one_line(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    for target in (tmp_path / "missing.onnx", junk, tmp_path / "model.txt"):
        result = run(script("ddpm-info"), target)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("ddpm-info: error:"), result.stderr


def test_metadata_reader_matches_onnx(small_onnx, tmp_path):
    for path in (SHIPPED, small_onnx):
        assert onnx_metadata(path) == {p.key: p.value for p in onnx.load(path).metadata_props}
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    assert onnx_metadata(tmp_path / "junk.onnx") == {}
    assert shipped_classes() == ("face", "person", "animal", "food", "object")


def console_scripts() -> list[str]:
    return sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


@pytest.mark.parametrize("name", console_scripts())
def test_every_command_has_version(name):
    result = run(script(name), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{name} {__version__}"


def test_context_help_names_the_shipped_classes():
    result = run(script("ddpm-run"), "-h")
    assert result.returncode == 0
    assert "face, person, animal, food, object" in " ".join(result.stdout.split())
    assert "hero" not in result.stdout
