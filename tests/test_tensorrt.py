"""TensorRT build and backend. The logic (profile, sidecar, timing cache, version rules, chunking, padding,
copies) runs against test doubles of the exact tensorrt / cuda.bindings API we call (tests/fakes); the
real-engine tests at the end run only where TensorRT and a GPU exist, and skip with the reason otherwise."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fakes.fake_cuda import install_cudart, make_fake_cudart
from fakes.fake_tensorrt import install_tensorrt, make_fake_tensorrt

from ddpm_edge.runtime.api import SpriteGenerator
from ddpm_edge.runtime.backends import load_unet
from ddpm_edge.runtime.errors import DdpmEdgeError, MissingDependency
from ddpm_edge.runtime.backends.ort import OnnxUnet
from ddpm_edge.runtime.backends.trt import TensorRTUnet, sidecar_path

pytest.importorskip("onnx")
from ddpm_edge.export.tensorrt_build import build_engine, parse_batch  # noqa: E402


@pytest.fixture
def fake_gpu(monkeypatch):
    """Install fake TensorRT 10.9 + a fake H100; returns a function to swap either later."""
    state = {}

    def use(version="10.9.0", gpu="NVIDIA H100 80GB HBM3", capability=(9, 0), devices=1):
        state["trt"] = make_fake_tensorrt(version)
        state["cudart"] = make_fake_cudart(gpu, capability, devices)
        install_tensorrt(monkeypatch, state["trt"])
        install_cudart(monkeypatch, state["cudart"])
        return state["trt"], state["cudart"]

    use()
    return use


def inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 16, 16), dtype=np.float32)
    t = rng.integers(1, 501, size=(n, 1)).astype(np.float32) / 500
    c = np.eye(5, dtype=np.float32)[rng.integers(0, 5, size=n)]
    return x, t, c


# --- without TensorRT: one-line reasons -------------------------------------------------------------

def test_without_tensorrt_build_and_load_say_why(monkeypatch, small_onnx, tmp_path):
    install_tensorrt(monkeypatch, None)
    with pytest.raises(MissingDependency, match="tensorrt is not installed"):
        build_engine(small_onnx, tmp_path / "unet.plan")
    (tmp_path / "unet.plan").write_bytes(b"plan")
    with pytest.raises(MissingDependency, match="tensorrt is not installed") as info:
        load_unet(tmp_path / "unet.plan")
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == [tmp_path / "unet.plan"]


def test_without_tensorrt_the_clis_fail_in_one_line(monkeypatch, small_onnx, tmp_path):
    from ddpm_edge.export.cli import app as export_app
    from ddpm_edge.runtime.cli import app as run_app

    install_tensorrt(monkeypatch, None)
    plan = tmp_path / "unet.plan"
    result = CliRunner().invoke(export_app, ["--onnx", str(small_onnx), "--trt", str(plan)])
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ddpm-export: error:") and "tensorrt" in lines[0]
    plan.write_bytes(b"not really a plan")
    result = CliRunner().invoke(run_app, ["--engine", str(plan), "-n", "2", "-o", str(tmp_path / "s.png"), "-q"])
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ddpm-run: error:") and "tensorrt" in lines[0]


def test_without_cuda_python_or_gpu(monkeypatch, fake_gpu, small_onnx, tmp_path):
    fake_gpu(devices=0)
    with pytest.raises(MissingDependency, match="found none"):
        build_engine(small_onnx, tmp_path / "unet.plan")
    monkeypatch.setitem(__import__("sys").modules, "cuda", None)
    monkeypatch.setitem(__import__("sys").modules, "cuda.bindings", None)
    with pytest.raises(MissingDependency, match="cuda-python"):
        build_engine(small_onnx, tmp_path / "unet.plan")


# --- build ---------------------------------------------------------------------------------------

def test_build_writes_plan_sidecar_and_timing_cache(fake_gpu, small_onnx, tmp_path):
    trt, _ = fake_gpu()
    plan = tmp_path / "unet.plan"
    result = build_engine(small_onnx, plan, batch="2:8:32", workspace_mib=512)
    record = trt.builds[-1]
    assert record["strongly_typed"] and record["flags"] == [] and record["workspace"] == 512 << 20
    assert record["profiles"] == [{"x": [[2, 3, 16, 16], [8, 3, 16, 16], [32, 3, 16, 16]],
                                   "t": [[2, 1], [8, 1], [32, 1]], "c": [[2, 5], [8, 5], [32, 5]]}]
    meta = json.loads(sidecar_path(plan).read_text())
    assert meta["batch_profile"] == {"min": 2, "opt": 8, "max": 32}
    assert meta["precision"] == "fp32" and meta["tensorrt_version"] == "10.9.0"
    assert meta["gpu"] == {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert meta["model"]["T"] == "500" and json.loads(meta["model"]["context_names"])[0] == "hero"
    from ddpm_edge.runtime.files import sha256_file
    assert meta["plan_sha256"] == sha256_file(plan) and meta["source_onnx_sha256"] == sha256_file(small_onnx)
    assert result.timing_cache.is_file() and result.timing_cache.parent == tmp_path


def test_timing_cache_is_keyed_by_model_version_and_gpu(fake_gpu, small_onnx, tmp_path):
    trt, _ = fake_gpu()
    first = build_engine(small_onnx, tmp_path / "unet.plan")
    assert trt.builds[-1]["cache_layers_before"] == 0
    again = build_engine(small_onnx, tmp_path / "unet.plan")
    assert again.timing_cache == first.timing_cache and trt.builds[-1]["cache_layers_before"] == 10  # reused
    trt, _ = fake_gpu(gpu="NVIDIA L4", capability=(8, 9))
    other_gpu = build_engine(small_onnx, tmp_path / "unet.plan")
    assert other_gpu.timing_cache != first.timing_cache and trt.builds[-1]["cache_layers_before"] == 0
    trt, _ = fake_gpu(version="10.11.0")
    other_trt = build_engine(small_onnx, tmp_path / "unet.plan")
    assert other_trt.timing_cache not in (first.timing_cache, other_gpu.timing_cache)
    other_trt.timing_cache.write_bytes(b"\x00 damaged")       # not a timing cache: start a new one, say so
    said = []
    rebuilt = build_engine(small_onnx, tmp_path / "unet.plan", log=said.append)
    assert trt.builds[-1]["cache_layers_before"] == 0 and any("did not fit" in line for line in said)
    assert not any("timing cache reused" in line for line in said)
    assert json.loads(rebuilt.timing_cache.read_text())["layers"] == 10


def test_a_refused_profile_is_one_line(fake_gpu, small_onnx, tmp_path, monkeypatch):
    trt, _ = fake_gpu()
    config_class = type(trt.Builder(None).create_builder_config())
    monkeypatch.setattr(config_class, "add_optimization_profile", lambda self, profile: -1)
    with pytest.raises(DdpmEdgeError, match="refused the batch profile 1:16:256"):
        build_engine(small_onnx, tmp_path / "unet.plan")
    assert list(tmp_path.iterdir()) == []


def test_precision_rules_for_tensorrt_10_and_11(fake_gpu, small_onnx, tmp_path):
    from ddpm_edge.export.fp16 import export_fp16

    fp16_onnx = export_fp16(small_onnx, tmp_path / "unet16.onnx").path
    trt, _ = fake_gpu("10.9.0")
    weak = build_engine(small_onnx, tmp_path / "weak.plan", fp16=True)     # 10.x: FP16 flag, weakly typed
    assert weak.precision == "fp16" and trt.builds[-1]["flags"] == ["FP16"] and not trt.builds[-1]["strongly_typed"]
    strong = build_engine(fp16_onnx, tmp_path / "strong10.plan")           # 10.x: fp16 ONNX, strongly typed
    assert strong.precision == "fp16" and trt.builds[-1]["flags"] == [] and trt.builds[-1]["strongly_typed"]
    trt, _ = fake_gpu("11.2.0")
    with pytest.raises(DdpmEdgeError, match="strongly typed"):              # 11.x: no FP16 flag at all
        build_engine(small_onnx, tmp_path / "weak11.plan", fp16=True)
    assert not (tmp_path / "weak11.plan").exists()
    built = build_engine(fp16_onnx, tmp_path / "strong11.plan")
    assert built.precision == "fp16" and json.loads(built.sidecar.read_text())["precision"] == "fp16"


def test_bad_inputs_are_refused(fake_gpu, small_onnx, tmp_path):
    with pytest.raises(DdpmEdgeError, match="MIN:OPT:MAX"):
        parse_batch("1:16")
    with pytest.raises(DdpmEdgeError, match="min <= opt <= max"):
        parse_batch("16:1:256")
    assert parse_batch("8") == (8, 8, 8)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not onnx")
    with pytest.raises(DdpmEdgeError):
        build_engine(garbage, tmp_path / "unet.plan")
    assert not (tmp_path / "unet.plan").exists()


# --- load and run --------------------------------------------------------------------------------

def test_engine_matches_onnx_runtime_and_splits_above_profile_max(fake_gpu, small_onnx, tmp_path):
    trt, cudart = fake_gpu()
    plan = build_engine(small_onnx, tmp_path / "unet.plan", batch="1:2:4").plan
    engine, reference = load_unet(plan), OnnxUnet(small_onnx, device="cpu")
    assert isinstance(engine, TensorRTUnet) and engine.max_batch == 4
    x, t, c = inputs(10)
    trt.executions.clear()
    eps = engine(x, t, c)
    assert trt.executions == [4, 4, 2]                                   # 10 rows, profile max 4
    assert np.abs(eps - reference(x, t, c)).max() < 1e-5
    kinds = {kind.name for kind, _ in cudart.copies}
    assert kinds == {"cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost"}
    small = load_unet(plan, max_batch=3)                                 # a smaller cap is honoured
    trt.executions.clear()
    small(x, t, c)
    assert trt.executions == [3, 3, 3, 1]


def test_short_chunks_are_padded_to_profile_min(fake_gpu, small_onnx, tmp_path):
    trt, _ = fake_gpu()
    plan = build_engine(small_onnx, tmp_path / "unet.plan", batch="4:4:8").plan
    engine, reference = TensorRTUnet(plan), OnnxUnet(small_onnx, device="cpu")
    x, t, c = inputs(3)
    trt.executions.clear()
    eps = engine(x, t, c)
    assert trt.executions == [4] and eps.shape == (3, 3, 16, 16)
    assert np.abs(eps - reference(x, t, c)).max() < 1e-5


def test_sampling_through_the_engine_equals_the_onnx_loop(fake_gpu, small_onnx, tmp_path):
    fake_gpu()
    plan = build_engine(small_onnx, tmp_path / "unet.plan", batch="1:8:8").plan
    a = SpriteGenerator.load(plan).generate_raw(5, seed=4, sampler="ddim", steps=10, guidance=1.0, context="food")
    b = SpriteGenerator(OnnxUnet(small_onnx, device="cpu")).generate_raw(5, seed=4, sampler="ddim", steps=10,
                                                                         guidance=1.0, context="food")
    assert np.abs(a - b).max() < 1e-4


def test_plan_from_another_tensorrt_or_gpu_is_refused(fake_gpu, small_onnx, tmp_path):
    fake_gpu("10.9.0")
    plan = build_engine(small_onnx, tmp_path / "unet.plan").plan
    fake_gpu("10.11.0")
    with pytest.raises(DdpmEdgeError, match="built with TensorRT 10.9.0, this is TensorRT 10.11.0"):
        TensorRTUnet(plan)
    fake_gpu("10.9.0", gpu="NVIDIA A100-SXM4-80GB", capability=(8, 0))
    with pytest.raises(DdpmEdgeError, match="built for NVIDIA H100 80GB HBM3 .compute 9.0.*A100"):
        TensorRTUnet(plan)


def test_changed_plan_missing_or_bad_sidecar_are_refused(fake_gpu, small_onnx, tmp_path):
    fake_gpu()
    plan = build_engine(small_onnx, tmp_path / "unet.plan").plan
    sidecar = sidecar_path(plan)
    good = sidecar.read_text()
    plan.write_bytes(plan.read_bytes() + b"x")
    with pytest.raises(DdpmEdgeError, match="does not match its sidecar"):
        TensorRTUnet(plan)
    sidecar.write_text("{not json")
    with pytest.raises(DdpmEdgeError, match="not a ddpm-edge TensorRT sidecar"):
        TensorRTUnet(plan)
    sidecar.write_text(json.dumps({**json.loads(good), "format": "other"}))
    with pytest.raises(DdpmEdgeError, match="not a ddpm-edge TensorRT sidecar"):
        TensorRTUnet(plan)
    sidecar.unlink()
    with pytest.raises(DdpmEdgeError, match="no sidecar"):
        TensorRTUnet(plan)


def test_export_cli_builds_fp16_onnx_loop_and_engine(fake_gpu, small_onnx, tmp_path):
    from ddpm_edge.export.cli import app as export_app

    fake_gpu("11.2.0")
    out, plan, loop = tmp_path / "u16.onnx", tmp_path / "u16.plan", tmp_path / "loop.onnx"
    result = CliRunner().invoke(export_app, ["--onnx", str(small_onnx), "--fp16", "-o", str(out), "--trt", str(plan),
                                             "--batch", "1:4:16", "--gpu-loop", str(loop), "-q"])
    assert result.exit_code == 0, result.output
    meta = json.loads(sidecar_path(plan).read_text())
    assert meta["precision"] == "fp16" and meta["batch_profile"]["max"] == 16 and loop.is_file()
    result = CliRunner().invoke(export_app, ["--onnx", str(small_onnx)])
    assert result.exit_code == 2 and "needs something to do" in result.output


# --- real TensorRT (skips cleanly without it) ---------------------------------------------------------

def _real_trt_reason():
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (TensorRT needs an NVIDIA GPU machine)"
    if importlib.util.find_spec("cuda") is None:
        return "cuda-python is not installed"
    try:
        from cuda.bindings import runtime as cudart
        if cudart.cudaGetDeviceCount()[1] < 1:
            return "no CUDA GPU"
    except Exception as e:  # pragma: no cover - depends on the machine
        return f"CUDA unavailable: {e}"
    return None  # pragma: no cover


REAL = pytest.mark.skipif(_real_trt_reason() is not None, reason=str(_real_trt_reason()))


@REAL
@pytest.mark.parametrize("fp16", [False, True])
def test_real_engine_matches_onnx_runtime(small_onnx, tmp_path, fp16):  # pragma: no cover - GPU only
    source = small_onnx
    if fp16:
        from ddpm_edge.export.fp16 import export_fp16
        source = export_fp16(small_onnx, tmp_path / "u16.onnx").path
    plan = build_engine(source, tmp_path / "unet.plan", batch="1:4:8", workspace_mib=256).plan
    engine, reference = TensorRTUnet(plan), OnnxUnet(small_onnx, device="cpu")
    x, t, c = inputs(11)
    assert np.abs(engine(x, t, c) - reference(x, t, c)).max() < (2e-2 if fp16 else 1e-3)
