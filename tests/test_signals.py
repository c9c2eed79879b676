"""SIGTERM and SIGHUP are handled like Ctrl-C: real signals sent to the console scripts while they write
(a sheet and its sprites, an ONNX export, a training checkpoint) leave no .part file, no temp folder,
no partial output, and end with one line and exit 128 + signal."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import script

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.startswith(".") or p.suffix == ".part" or p.name.startswith(("ddpm-export-", "tmp")))


def signal_when(cmd, cwd: Path, ready, signum, env=None, timeout=240):
    """Start `cmd`, wait until ready() (polled every 2 ms), send `signum`, return (process, stderr)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"finished before the signal could be sent: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("never reached the point to signal at")
            time.sleep(0.002)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, stderr


def part_files(folder: Path):
    return lambda: any(p.suffix == ".part" for p in folder.rglob("*"))


def assert_stopped(proc, stderr, prog, signum):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == 128 + signum, stderr
    assert lines == [f"{prog}: terminated ({signal.Signals(signum).name})"], stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_ddpm_run_stopped_while_writing(small_onnx, tmp_path, signum):
    out = tmp_path / "out"
    out.mkdir()
    cmd = [script("ddpm-run"), "--engine", str(small_onnx), "-n", "400", "--sampler", "ddim", "--steps", "2",
           "--seed", "1", "--out", "sheet.png", "--each", "each", "--atlas", "-q"]
    proc, stderr = signal_when(cmd, out, part_files(out), signum)
    assert_stopped(proc, stderr, "ddpm-run", signum)
    assert sorted(p.name for p in out.iterdir()) == []


def test_ddpm_export_stopped_while_validating(small_checkpoint, tmp_path):
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    out.mkdir(), scratch.mkdir()
    cmd = [script("ddpm-export"), "--weights", str(small_checkpoint), "--out", "unet.onnx", "-q"]
    proc, stderr = signal_when(cmd, out, part_files(out), signal.SIGTERM, env={**ENV, "TMPDIR": str(scratch)})
    assert_stopped(proc, stderr, "ddpm-export", signal.SIGTERM)
    assert list(out.iterdir()) == []
    assert [p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_")] == []   # torch's cache


SLOW_SAVE = textwrap.dedent("""
    import sys, time, torch
    save = torch.save
    def slow_save(obj, f, *args, **kwargs):
        save(obj, f, *args, **kwargs)
        time.sleep(60)              # the signal arrives while the checkpoint's .part file exists
    torch.save = slow_save
    from ddpm_edge.ddpm_ref.cli import main
    sys.argv = ["ddpm-train", "--epochs", "1", "--n-feat", "8", "--batch-size", "512", "--out", "ck.pth", "-q",
                "--device", "cpu", "--threads", "1"]
    main()
""")


def test_ddpm_train_stopped_while_saving(tmp_path):
    pytest.importorskip("torch")
    proc, stderr = signal_when([sys.executable, "-c", SLOW_SAVE], tmp_path, part_files(tmp_path), signal.SIGTERM)
    assert_stopped(proc, stderr, "ddpm-train", signal.SIGTERM)
    assert list(tmp_path.iterdir()) == []
