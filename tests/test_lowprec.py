"""Low-precision engines: the OpenVINO backend (precision set and read back), int8 export (QDQ per-channel,
never over its input), the quality gate (a yardstick double for the logic, one real yardstick run), and
the one-line refusals of bad backend/precision choices."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import numpy as np
import pytest
from conftest import script

from ddpm_edge.runtime import gate
from ddpm_edge.runtime.backends import default_model_path, load_unet
from ddpm_edge.runtime.backends.common import onnx_summary
from ddpm_edge.runtime.errors import DdpmEdgeError, MissingDependency, ValidationFailed

openvino = pytest.importorskip("openvino")   # the dev extra installs it; CI treats a skip as a failure
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def inputs(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 3, 16, 16), dtype=np.float32), rng.uniform(0, 1, (n, 1)).astype(np.float32),
            np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)])


def cli(name, *args, cwd=None, env=None):
    return subprocess.run([script(name), *map(str, args)], capture_output=True, text=True,
                          env={**ENV, **(env or {})}, cwd=cwd, timeout=600)


def assert_one_line(result, match, code):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and match in lines[0], result.stderr


# -- OpenVINO backend ------------------------------------------------------------------------------------

def test_openvino_fp32_matches_onnxruntime():
    ort, ov = load_unet(device="cpu"), load_unet(backend="openvino", precision="fp32")
    assert (ort.backend, ort.precision, ov.backend, ov.precision) == ("onnxruntime", "fp32", "openvino", "fp32")
    assert ov.inference_precision == "f32" and ov.spec == ort.spec and ov.sha256 == ort.sha256
    x, t, c = inputs(6)
    np.testing.assert_allclose(ov(x, t, c), ort(x, t, c), atol=1e-4, rtol=0)
    capped = load_unet(backend="openvino", precision="fp32", max_batch=4)   # split 4 + 2: same rows
    np.testing.assert_allclose(capped(x, t, c), ov(x, t, c), atol=1e-6, rtol=0)


def test_openvino_bf16_is_really_set_and_differs():
    f32 = load_unet(backend="openvino")                      # no precision: fp32, never OpenVINO's silent bf16
    bf16 = load_unet(precision="bf16")                       # auto → openvino, the one backend with bf16
    assert (f32.precision, f32.inference_precision) == ("fp32", "f32")
    assert (bf16.backend, bf16.precision, bf16.inference_precision) == ("openvino", "bf16", "bf16")
    x, t, c = inputs(8)
    diff = np.abs(bf16(x, t, c) - f32(x, t, c))
    assert 1e-4 < diff.mean() < 0.05, diff.mean()   # bf16 moves eps (measured ~4e-3), but stays eps


def test_openvino_refuses_a_precision_the_device_does_not_honour(monkeypatch):
    import openvino as ov
    real_compile = ov.Core.compile_model

    class Downgraded:   # a CPU without bf16: the plugin compiles at f32 whatever was asked
        def __init__(self, compiled):
            self._compiled = compiled

        def get_property(self, name):
            return ov.Type.f32 if name == "INFERENCE_PRECISION_HINT" else self._compiled.get_property(name)

        def __getattr__(self, name):
            return getattr(self._compiled, name)

    monkeypatch.setattr(ov.Core, "compile_model", lambda self, *a, **k: Downgraded(real_compile(self, *a, **k)))
    with pytest.raises(DdpmEdgeError, match="does not run bf16") as info:
        load_unet(backend="openvino", precision="bf16")
    assert "\n" not in str(info.value)
    assert load_unet(backend="openvino", precision="fp32").precision == "fp32"


def test_missing_openvino_is_a_missing_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)     # import openvino → ImportError
    with pytest.raises(MissingDependency, match=r"pip install 'ddpm-edge\[openvino\]'") as info:
        load_unet(backend="openvino")
    assert info.value.exit_code == 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(backend="onnxruntime", precision="bf16"), "bf16 runs on --backend openvino"),
    (dict(precision="int8"), "make an int8 model"),
    (dict(backend="openvino", precision="int8"), "not int8"),
    (dict(backend="tensorrt"), "needs a .plan engine"),
    (dict(backend="cuda"), "unknown backend"),
    (dict(precision="fp8"), "unknown precision"),
    (dict(backend="openvino", device="cuda"), "runs on the CPU"),
])
def test_bad_backend_precision_choices(kwargs, match):
    with pytest.raises(DdpmEdgeError, match=match) as info:
        load_unet(**kwargs)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


# -- int8 export -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def int8_small(small_onnx, tmp_path_factory):
    """The small random UNet → int8 .onnx, no gate (a random model has no quality to keep); a loose eps
    budget so every conv is quantized (the per-layer search is the shipped model's, in the README)."""
    from ddpm_edge.export.int8 import export_int8
    out = tmp_path_factory.mktemp("int8") / "small_int8.onnx"
    result = export_int8(small_onnx, out, max_eps_error=1.0, gate="none")
    return small_onnx, result


def test_int8_export_is_per_channel_qdq_and_close(int8_small):
    import onnx
    from onnx import numpy_helper
    fp32_path, result = int8_small
    model = onnx.load(str(result.path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                 and inits.get(n.input[0]) is not None and inits[n.input[0]].dtype == np.int8]
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert len(weight_dq) == len(convs) - len(result.kept_float) > 0
    for node in weight_dq:   # one scale per output channel
        scale = inits[node.input[1]]
        assert scale.ndim == 1 and scale.size == inits[node.input[0]].shape[[a.i for a in node.attribute
                                                                                if a.name == "axis"][0]] > 1
    meta, ops = onnx_summary(result.path)
    assert meta["precision"] == "int8" and "QuantizeLinear" in ops and meta["source_onnx_sha256"]
    unet, ref = load_unet(result.path, device="cpu"), load_unet(fp32_path, device="cpu")
    assert (unet.backend, unet.precision) == ("onnxruntime", "int8")
    x, t, c = inputs(16)
    err = float(np.abs(unet(x, t, c) - ref(x, t, c)).mean())
    assert 0 < err < 4 * max(result.eps_error, 1e-3), (err, result.eps_error)   # moves eps, within its measured size
    assert load_unet(result.path, backend="openvino").precision == "int8"     # OpenVINO runs the QDQ graph as int8


def test_int8_export_never_overwrites_its_input(small_onnx, tmp_path):
    src = tmp_path / "unet.onnx"
    src.write_bytes(small_onnx.read_bytes())
    before = src.read_bytes()
    result = cli("ddpm-export", "--onnx", src, "--int8", "-o", src)
    assert_one_line(result, "give an --out other than the --onnx", 2)
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["unet.onnx"]
    assert_one_line(cli("ddpm-export", "--onnx", src, "--gate", "ddim:5"), "give --int8 too", 2)
    assert_one_line(cli("ddpm-export", "--onnx", src, "--int8", "-o", tmp_path / "x.plan"), "not x.plan", 2)


# -- the quality gate ------------------------------------------------------------------------------------

class FakeYardstick:
    """FD = mean brightness / 25.5 (0..10; a stand-in that tracks how far sprites move), accuracy 0.9."""

    def __init__(self):
        self.reports = 0

    def report(self, sprites, requested, config="", seed=None):
        self.reports += 1
        from ddpm_edge.runtime.quality import QualityReport
        fd = float(sprites.astype(float).mean() / 25.5)
        return QualityReport(fd=fd, kid=0.0, precision=1.0, recall=1.0, accuracy=0.9, n=len(sprites), seed=seed)

    @staticmethod
    def verdict(candidate, reference):
        from ddpm_edge.runtime.quality import Yardstick
        return Yardstick.verdict(candidate, reference)


class Shifted:
    """A 'low-precision' engine: the fp32 model with eps shifted (by −5: white sprites, refused; by 0: accepted)."""

    backend, precision = "openvino", "bf16"

    def __init__(self, unet, shift, sha):
        self.unet, self.shift, self.sha256, self.spec, self.path = unet, shift, sha, unet.spec, unet.path
        self.max_batch = None

    def __call__(self, x, t, c):
        return self.unet(x, t, c) + np.float32(self.shift)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gate, "SHIPPED_VERDICTS", tmp_path / "shipped.json")
    return tmp_path


def test_gate_accepts_equal_refuses_moved_and_caches(small_onnx, cache):
    twin = load_unet(small_onnx, device="cpu")
    config = gate.GateConfig.parse("ddim:4", n=6, seeds=(0, 1, 2))
    ys = FakeYardstick()
    same = Shifted(twin, 0.0, "a" * 64)
    verdict = gate.check(same, config, twin=twin, yardstick=ys)
    assert verdict.equal and len(verdict.candidate) == 3 and ys.reports == 6
    assert gate.check(same, config, twin=twin, yardstick=ys).equal and ys.reports == 6   # cached, not re-measured
    moved = Shifted(twin, -5.0, "b" * 64)   # x0 far above 1: white sprites
    with pytest.raises(ValidationFailed, match=r"quality gate refuses .*not equal: FD") as info:
        gate.check(moved, config, twin=twin, yardstick=ys)
    assert info.value.exit_code == 4 and ys.reports == 9   # the fp32 side came from the cache
    stored = json.loads((cache / "cache" / "verdicts.json").read_text())["verdicts"]
    assert sum(k.startswith("b" * 64) and not v["equal"] for k, v in stored.items()) == 1
    with pytest.raises(ValidationFailed):        # a cached refusal refuses without measuring
        gate.check(moved, config, twin=twin, yardstick=ys)
    assert ys.reports == 9
    with pytest.raises(DdpmEdgeError, match="has no quality verdict"):
        gate.check(Shifted(twin, 0.0, "c" * 64), config, twin=twin, yardstick=ys, run=False)
    assert gate.check(twin, config) is None       # fp32 needs no gate


def test_gate_with_the_real_yardstick(cache):
    """One real run: OpenVINO bf16 of the shipped model vs onnxruntime fp32, small n."""
    bf16 = load_unet(precision="bf16")
    config = gate.GateConfig.parse("ddim:5", n=20, seeds=(0, 1))
    verdict = gate.check(bf16, config)
    assert verdict.equal, verdict.reason
    assert verdict.reference and all(r["n"] == 20 for r in verdict.candidate + verdict.reference)


def test_ddpm_run_bad_choices_and_gated_first_use(tmp_path, cache):
    shipped = default_model_path()
    assert_one_line(cli("ddpm-run", "--backend", "onnxruntime", "--precision", "bf16", "-o", tmp_path / "a.png"),
                    "bf16 runs on --backend openvino", 2)
    assert_one_line(cli("ddpm-run", "--precision", "int8", "-o", tmp_path / "a.png"), "make an int8 model", 2)
    assert_one_line(cli("ddpm-run", "--backend", "tensorrt", "-o", tmp_path / "a.png"), "needs a .plan engine", 2)
    assert_one_line(cli("ddpm-run", "--precision", "bf16", "--gpu-loop", "--sampler", "ddim", "-o", tmp_path / "a.png"),
                    "onnxruntime only", 2)
    result = cli("ddpm-run", "--precision", "bf16", "--sampler", "ddpm", "-o", tmp_path / "a.png",
                 env={"DDPM_EDGE_CACHE": str(cache / "cache")})   # unmeasured, too long to measure at run
    assert_one_line(result, "no quality verdict at ddpm:500 yet", 2)
    # a cached refusal for exactly this run's config: ddpm-run refuses with the figures, writes nothing
    bf16 = load_unet(shipped, precision="bf16")
    config = gate.GateConfig("ddim", 3, 0.0)
    refused = gate.GateVerdict(False, "not equal: FD 9.00 > 4.00 (…)", bf16.sha256, "openvino", "bf16", config.label)
    gate.store(gate.verdict_key(bf16.sha256, "openvino", "bf16", config), refused)
    out = tmp_path / "b.png"
    result = cli("ddpm-run", "--precision", "bf16", "--sampler", "ddim", "--steps", 3, "-n", 2, "-o", out, "-q",
                 env={"DDPM_EDGE_CACHE": str(cache / "cache")})
    assert_one_line(result, "quality gate refuses openvino bf16", 4)
    assert "FD 9.00" in result.stderr and not out.exists()
    accepted = gate.GateVerdict(True, "equal: …", bf16.sha256, "openvino", "bf16", config.label)
    gate.store(gate.verdict_key(bf16.sha256, "openvino", "bf16", config), accepted)
    result = cli("ddpm-run", "--precision", "bf16", "--sampler", "ddim", "--steps", 3, "-n", 2, "-o", out, "-q",
                 env={"DDPM_EDGE_CACHE": str(cache / "cache")})
    assert result.returncode == 0 and out.is_file(), result.stderr
    again = tmp_path / "again.png"   # the record names openvino bf16: --from regenerates on it, same bytes
    result = cli("ddpm-run", "--from", out, "-o", again, "-q", env={"DDPM_EDGE_CACHE": str(cache / "cache")})
    assert result.returncode == 0 and again.read_bytes() == out.read_bytes(), result.stderr


def test_shipped_int8_ir_carries_its_metadata_and_weights_hash(tmp_path):
    """weights/unet_int8.xml (ddpm-export --int8 -o unet_int8.xml): int8, spec from rt_info, close to fp32,
    and refused beside weights it was not written with."""
    xml = default_model_path().with_name("unet_int8.xml")
    unet, ref = load_unet(xml), load_unet(device="cpu")
    assert (unet.backend, unet.precision, unet.inference_precision) == ("openvino", "int8", "f32")
    assert unet.spec.context_names == ref.spec.context_names and unet.spec.extra["source_onnx_sha256"] == ref.sha256
    x, t, c = inputs(16)
    err = float(np.abs(unet(x, t, c) - ref(x, t, c)).mean())
    assert 0 < err < 0.05, err
    with pytest.raises(DdpmEdgeError, match="only as --precision int8"):
        load_unet(xml, precision="bf16")
    (tmp_path / "m.xml").write_bytes(xml.read_bytes())
    weights = bytearray(xml.with_suffix(".bin").read_bytes())
    weights[-1] ^= 1
    (tmp_path / "m.bin").write_bytes(bytes(weights))
    with pytest.raises(DdpmEdgeError, match="not the weights m.xml was written with"):
        load_unet(tmp_path / "m.xml")
    (tmp_path / "m.bin").unlink()
    with pytest.raises(DdpmEdgeError, match="needs its weights m.bin"):
        load_unet(tmp_path / "m.xml")


def test_auto_moves_only_gated_configurations_to_a_faster_engine():
    """backend auto: the default configuration with a class (a shipped equal verdict for OpenVINO bf16) runs
    on OpenVINO bf16; the course's DDPM and configurations without a verdict stay on onnxruntime fp32; an
    explicit backend never moves; the record names the engine that ran."""
    from ddpm_edge.runtime.api import SpriteGenerator
    from ddpm_edge.runtime.params import GenerationParams

    auto = SpriteGenerator.load()
    fast = auto.engine_for("dpmpp-2m-sde", 10, 2.0)
    assert (fast.backend, fast.precision) == ("openvino", "bf16")
    for config in (("ddpm", None, 0.0), ("ddim", 25, 2.0), ("dpmpp-2m-sde", 11, 2.0), ("dpmpp-2m", 10, 2.0)):
        engine = auto.engine_for(*config)
        assert (engine.backend, engine.precision) == ("onnxruntime", "fp32"), config
    fixed = SpriteGenerator.load(backend="onnxruntime")
    assert fixed.engine_for("dpmpp-2m-sde", 10, 2.0) is fixed.unet
    batch = auto.generate_batch(GenerationParams(n=2, seed=1, context="food"))
    assert (batch.backend, batch.precision) == ("openvino", "bf16") and batch.params.guidance == 2.0
    plain = auto.generate_batch(GenerationParams(n=2, seed=1, context="food", sampler="ddpm", steps=None))
    assert (plain.backend, plain.precision) == ("onnxruntime", "fp32")
