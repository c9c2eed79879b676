"""What a new user meets in the first ten minutes: outputs create their folders (and take them back on
failure), the dataset rebuild refuses to guess its folder, `--from` a per-sprite PNG regenerates that
sprite, singular wording, and a loop model run without --gpu-loop says so."""
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from ddpm_edge.runtime.assets import outputs
from ddpm_edge.runtime.assets.outputs import Batch, SheetLayout, Targets, sprite_names, write_outputs
from ddpm_edge.runtime.backends.common import check_unet_io
from ddpm_edge.runtime.cli import app, plural
from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.params import GenerationParams

from conftest import ROOT


def make_batch(n=3) -> Batch:
    sprites = np.random.default_rng(0).integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)
    return Batch(samples=np.zeros((n, 3, 16, 16), np.float32), sprites=sprites, names=tuple(sprite_names(["a"] * n)),
                 params=GenerationParams(n=n, seed=1), model_sha256="0" * 64, model_path="unet.onnx", version="t")


def test_outputs_create_their_folders(tmp_path):
    assets = tmp_path / "game" / "assets"          # neither exists: the README's API example writes here
    targets = Targets(sheet=assets / "food.png", atlas=True, each=assets / "food", animation=assets / "gif" / "a.gif")
    write_outputs(make_batch(), targets, SheetLayout())
    assert sorted(p.name for p in assets.iterdir()) == ["food", "food.json", "food.png", "gif"]


def test_created_folders_go_again_on_failure(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "_write_animation", broken)
    targets = Targets(sheet=tmp_path / "a" / "b" / "s.png", each=tmp_path / "a" / "each", animation=tmp_path / "a" / "x.gif")
    with pytest.raises((OSError, DdpmEdgeError)):
        write_outputs(make_batch(), targets, SheetLayout())
    assert list(tmp_path.iterdir()) == []


def dataset_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ddpm_edge.ddpm_ref.dataset", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_dataset_rebuild_needs_a_folder(tmp_path):
    package_data = sorted((ROOT / "ddpm_ref" / "data").iterdir())
    stamps = [p.stat().st_mtime_ns for p in package_data]
    result = dataset_cli(cwd=tmp_path)                                 # no folder: refused, nothing written
    assert result.returncode == 2 and "OUT_DIR" in result.stderr
    result = dataset_cli("--help", cwd=tmp_path)                       # help, not a folder called --help
    assert result.returncode == 0 and "fonts-noto-color-emoji" in " ".join(result.stdout.split())
    assert "unicode-data" in result.stdout
    result = dataset_cli("--", "-x", cwd=tmp_path)
    assert result.returncode == 2 and "looks like an option" in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert [p.stat().st_mtime_ns for p in sorted((ROOT / "ddpm_ref" / "data").iterdir())] == stamps


def test_from_a_per_sprite_png_refuses_sheet_outputs(small_onnx, tmp_path):
    runner = CliRunner()
    sheet = tmp_path / "s.png"
    args = ["--engine", str(small_onnx), "-n", "3", "--sampler", "ddim", "--steps", "3", "--seed", "4", "-q"]
    assert runner.invoke(app, [*args, "--out", str(sheet), "--each", str(tmp_path / "each")]).exit_code == 0
    one = tmp_path / "each" / "sprite_001.png"
    result = runner.invoke(app, ["--from", str(one), "--engine", str(small_onnx), "--out", str(tmp_path / "x.png"),
                                 "--atlas"])
    assert result.exit_code == 2 and "one sprite of a sheet" in result.output
    result = runner.invoke(app, ["--from", str(one), "--engine", str(small_onnx), "--out", str(tmp_path / "x.png"),
                                 "-n", "1"])
    assert result.exit_code == 2 and "sprite 1 of its batch" in result.output
    result = runner.invoke(app, ["--from", str(one), "--engine", str(small_onnx), "--out", str(tmp_path / "y.png")])
    assert result.exit_code == 0 and "sprite 1 of 3" in result.output
    assert (tmp_path / "y.png").read_bytes() == one.read_bytes()


def test_wording():
    assert plural(1, "sprite") == "1 sprite" and plural(16, "sprite") == "16 sprites"
    assert plural(1, "step") == "1 step"


def test_loop_model_without_gpu_loop_names_the_flag():
    loop_inputs = {name: (True, ["n", 3, 16, 16]) for name in ("x", "c", "noise", "table", "k")}
    with pytest.raises(DdpmEdgeError, match="ddpm-run --gpu-loop"):
        check_unet_io("loop.onnx", loop_inputs, ["x_prev", "k_next"])
    with pytest.raises(DdpmEdgeError, match="not a ddpm UNet"):
        check_unet_io("other.onnx", {"input": (True, [1])}, ["output"])
