"""The benchmark scripts run as a user runs them (real subprocess, real ONNX Runtime sessions). Only the
scripts' workings are checked here, never their speed: speed targets live in benchmarks/."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CUDA_BENCH = ROOT / "benchmarks" / "cuda_bench.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def bench(*args, cwd):
    return subprocess.run([sys.executable, str(CUDA_BENCH), *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=600)


def test_cuda_bench_cpu_smoke(small_onnx, tmp_path):
    """--cpu-smoke drives every ONNX Runtime path end to end and writes the table; missing software is a
    skip reason in the table, not a crash."""
    out = tmp_path / "bench.md"
    result = bench("--cpu-smoke", "--onnx", small_onnx, "--n", 1, 2, "--repeats", 1, "--out", out,
                   "--paths", "ort-cuda", "ort-iobinding", "gpu-loop", "ort-cudagraph", "trt-fp16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = out.read_text()
    assert "CPU (smoke run: not CUDA numbers)" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [tuple(cell.strip() for cell in row.split("|")[1:3]) for row in rows] == [
        ("ort-cuda", "1"), ("ort-cuda", "2"), ("ort-iobinding", "1"), ("ort-iobinding", "2"),
        ("gpu-loop", "1"), ("gpu-loop", "2")]
    for row in rows:
        ddim, ddpm = (float(cell) for cell in row.split("|")[4:6])
        assert 0 < ddim < ddpm          # 25 UNet calls take less than 500
    assert "- ort-cudagraph: skipped (needs ONNX Runtime's CUDA provider)" in table
    assert "- trt-fp16: skipped" in table
    assert sorted(p.name for p in tmp_path.iterdir()) in (["bench.md"], ["bench.md", "bench.png"])


def test_cuda_bench_without_a_gpu_says_so(small_onnx, tmp_path):
    import onnxruntime

    torch = pytest.importorskip("torch")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers() or torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    result = bench("--onnx", small_onnx, "--out", tmp_path / "bench.md", cwd=tmp_path)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "cuda_bench: no CUDA GPU here (torch.cuda unavailable and onnxruntime has no CUDA provider); nothing to measure"]
    assert list(tmp_path.iterdir()) == []


def test_loop_overhead_smoke(tmp_path):
    """benchmarks/loop_overhead.py with tiny settings: one row per solver, figures that add up, files written."""
    import json
    out = tmp_path / "overhead.md"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "loop_overhead.py"), "--onnx",
                             str(ROOT / "tests" / "data" / "records_v1" / "tiny.onnx"), "--n", "2", "--max-calls", "3",
                             "--repeats", "1", "--steps", "4", "--out", str(out)],
                            capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "[1/1] unipc: UNet" in result.stderr                       # progress as it goes
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["ddpm", "ddim", "dpmpp-2m", "dpmpp-2m-sde", "dpmpp-3m-sde",
                                                         "unipc"]
    figures = json.loads(out.with_suffix(".json").read_text())["solvers"]
    for f in figures.values():       # every run draws x_T: some noise time for every solver
        assert f["calls"] == 3 and min(f["unet_ms"], f["step_us"], f["noise_us"], f["overhead"]) > 0
    assert figures["ddpm"]["steps"] == 500 and figures["dpmpp-2m"]["steps"] == 4


def test_speed_benchmark_smoke(small_checkpoint, small_onnx, tmp_path):
    """benchmarks/speed.py --smoke: every section runs (peak, per call, end to end) and the table names the
    course path, our default and the speed-up; unavailable engines are listed with a reason."""
    out = tmp_path / "speed"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--smoke", "--threads", "1",
                             "--weights", str(small_checkpoint), "--onnx", str(small_onnx), "--out", str(out)],
                            capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    table = out.with_suffix(".md").read_text()
    assert "Matmul peak" in table and "| 1 | onnxruntime fp32 |" in table
    assert "onnxruntime int8 | — | unavailable" in table
    assert "| course: torch eager, DDPM-500 |" in table and "| ours: default (onnxruntime fp32, auto) |" in table
    import json
    data = json.loads(out.with_suffix(".json").read_text())
    course = next(r for r in data["end_to_end"] if r["path"].startswith("course"))
    assert course["speedup_vs_course"] == 1.0
    ours = next(r for r in data["end_to_end"] if r["path"].startswith("ours: default"))
    assert ours["speedup_vs_course"] > 1      # 10 calls beat 500 even on a tiny model
