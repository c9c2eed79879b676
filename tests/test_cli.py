"""ddpm-export and ddpm-run as a user runs them: real console scripts, real files, one-line errors."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from conftest import script

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(name, *args, cwd=None):
    exe = script(name)
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)


def assert_one_line_error(result, match):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and match in lines[0], result.stderr


def test_export_then_run(small_checkpoint, tmp_path):
    onnx_path = tmp_path / "unet.onnx"
    result = cli("ddpm-export", "--weights", small_checkpoint, "--out", onnx_path)
    assert result.returncode == 0, result.stderr
    assert "max abs error" in result.stderr and str(onnx_path) in result.stderr
    sheet = tmp_path / "sprites.png"
    result = cli("ddpm-run", "--engine", onnx_path, "-n", "16", "--sampler", "ddim", "--steps", "5",
                 "--seed", "1", "--out", sheet, "--scale", "2")
    assert result.returncode == 0, result.stderr
    image = Image.open(sheet)
    assert image.size == (4 * 32, 4 * 32) and image.mode == "RGB"
    raw = tmp_path / "raw.npy"
    assert cli("ddpm-run", "--engine", onnx_path, "-n", "3", "--sampler", "ddim", "--steps", "5", "--seed", "1",
               "--context", "food", "--out", raw, "-q").returncode == 0
    samples = np.load(raw)
    assert samples.shape == (3, 3, 16, 16) and samples.dtype == np.float32


def test_ddpm_500_from_cli(small_onnx, tmp_path):
    out = tmp_path / "ddpm.npy"
    result = cli("ddpm-run", "--engine", small_onnx, "-n", "2", "--seed", "4", "--out", out, "-q")
    assert result.returncode == 0, result.stderr
    again = tmp_path / "again.npy"
    cli("ddpm-run", "--engine", small_onnx, "-n", "2", "--seed", "4", "--out", again, "-q")
    np.testing.assert_array_equal(np.load(out), np.load(again))


@pytest.mark.parametrize("args,match", [
    (["-n", "0"], "at least 1"),
    (["-n", "-4"], "at least 1"),
    (["--context", "1,0,0"], "5 values"),
    (["--context", "dragon"], "unknown context"),
    (["--out", "/dev/null/s.png"], "not a folder"),   # missing folders are created; a file in the way is refused
    (["--out", "{tmp}/s.jpg"], ".png or .npy"),
    (["--steps", "0", "--sampler", "ddim"], "steps"),
    (["--guidance", "-2"], "guidance"),
])
def test_run_bad_input(small_onnx, tmp_path, args, match):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = cli("ddpm-run", "--engine", small_onnx, "--sampler", "ddim", "--steps", "2", *args, cwd=tmp_path)
    assert_one_line_error(result, match)
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == []


@pytest.mark.parametrize("name,args,match", [
    ("ddpm-run", ["--bogus"], "No such option: --bogus"),
    ("ddpm-run", ["-n", "abc"], "Invalid value for '-n'"),
    ("ddpm-run", ["--sampler", "ddpx"], "Invalid value for '--sampler'"),
    ("ddpm-run", ["stray"], "unexpected extra argument"),
    ("ddpm-export", ["--batch"], "requires an argument"),
    ("ddpm-train", ["--epochs", "many"], "Invalid value for '--epochs'"),
])
def test_usage_errors_are_one_line(tmp_path, name, args, match):
    """Errors click finds while parsing (before our code runs) get the same one line and exit 2."""
    result = cli(name, *args, cwd=tmp_path)
    assert_one_line_error(result, match)
    assert result.returncode == 2 and f"(see {name} -h)" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_still_works():
    result = cli("ddpm-run", "-h")
    assert result.returncode == 0 and "--engine" in result.stdout and result.stderr == ""


def test_run_bad_models(tmp_path):
    assert_one_line_error(cli("ddpm-run", "--engine", tmp_path / "missing.onnx"), "not found")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(os.urandom(2048))
    assert_one_line_error(cli("ddpm-run", "--engine", corrupt, "--out", tmp_path / "s.png"), "not a loadable ONNX")
    other = tmp_path / "model.bin"
    other.write_bytes(b"x")
    assert_one_line_error(cli("ddpm-run", "--engine", other), "unknown model type")
    assert not (tmp_path / "s.png").exists()


def test_output_is_a_directory(small_onnx, tmp_path):
    (tmp_path / "taken.png").mkdir()
    assert_one_line_error(cli("ddpm-run", "--engine", small_onnx, "--out", tmp_path / "taken.png"), "directory")


def test_unwritable_output(small_onnx, tmp_path):
    if os.geteuid() == 0:  # root passes permission checks: use a folder no one can create files in
        target, match = "/proc/ddpm-edge-test.png", "cannot write"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target, match = locked / "s.png", "not writable"
    assert_one_line_error(cli("ddpm-run", "--engine", small_onnx, "--sampler", "ddim", "--steps", "2",
                              "--out", target), match)


def test_export_bad_input(tmp_path, small_checkpoint):
    assert_one_line_error(cli("ddpm-export", "--weights", tmp_path / "none.pth"), "not found")
    text = tmp_path / "readme.pth"
    text.write_text("not a checkpoint")
    assert_one_line_error(cli("ddpm-export", "--weights", text, "--out", tmp_path / "u.onnx"), "not a readable")
    assert_one_line_error(cli("ddpm-export", "--weights", small_checkpoint, "--shortcut", "maybe",
                              "--out", tmp_path / "u.onnx"), "shortcut policy")
    assert not (tmp_path / "u.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["readme.pth"]


def test_gpu_loop_from_the_command_line(small_onnx, tmp_path):
    """ddpm-export --gpu-loop --loop-guidance, then ddpm-run --gpu-loop --guidance on the CPU provider:
    the same sprites as the portable NumPy loop. The shipped model, whose sprites guidance visibly moves."""
    from ddpm_edge.runtime.backends import default_model_path

    shipped, loop = default_model_path(), tmp_path / "loop.onnx"
    result = cli("ddpm-export", "--onnx", shipped, "--gpu-loop", loop, "--loop-guidance")
    assert result.returncode == 0 and "with guidance" in result.stderr, result.stderr
    common = ["-n", "2", "--sampler", "ddim", "--steps", "5", "--seed", "3", "--context", "food", "-q",
              "--device", "cpu"]
    for engine, extra, guidance, name in ((loop, ["--gpu-loop"], 1.5, "loop.npy"), (shipped, [], 1.5, "numpy.npy"),
                                          (shipped, [], 0, "unguided.npy")):
        result = cli("ddpm-run", "--engine", engine, *extra, *common, "--guidance", guidance, "--out", tmp_path / name)
        assert result.returncode == 0, result.stderr
    loop_x, numpy_x = np.load(tmp_path / "loop.npy"), np.load(tmp_path / "numpy.npy")
    assert np.abs(loop_x - numpy_x).max() <= 1e-3
    assert np.abs(numpy_x - np.load(tmp_path / "unguided.npy")).max() > 0.1      # guidance did reach the loop
    assert_one_line_error(cli("ddpm-export", "--onnx", small_onnx, "--fp16", "--out", tmp_path / "h.onnx",
                              "--loop-guidance"), "give --gpu-loop too")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop.npy", "loop.onnx", "numpy.npy", "unguided.npy"]


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("describe,calls", [
    (None, [(1, 4, None), (2, 4, None), (4, 4, None)]),                                   # sampling: (done, total, x)
    (lambda epoch, loss: f"epoch {epoch} loss {loss:.3f}", [(3, 6, 2, 0.5), (6, 6, 3, 0.25)]),  # training, resumed
])
def test_progress_bar_on_a_terminal(monkeypatch, describe, calls):
    """The bar only draws on a terminal, so the CLI tests above never reach it: draw it here."""
    from ddpm_edge.runtime.cli_errors import progress_bar

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    update, close = progress_bar("work", describe=describe)
    for call in calls:
        update(*call)
    close()
    text = screen.getvalue()
    assert f"{calls[-1][0]}/{calls[-1][1]}" in text
    if describe is not None:
        assert "epoch 3 loss 0.250" in text
