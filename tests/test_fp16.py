"""fp16 export: graph shape (norms fp32, I/O float32, metadata), the PSNR gate, and a broken model failing it."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from ddpm_edge.export.fp16 import MIN_PSNR, export_fp16, psnr, spec_of, to_fp16  # noqa: E402
from ddpm_edge.runtime.errors import DdpmEdgeError, ValidationFailed  # noqa: E402
from ddpm_edge.runtime.backends.ort import OnnxUnet  # noqa: E402
from onnx import TensorProto, numpy_helper  # noqa: E402


@pytest.fixture(scope="module")
def fp16_onnx(small_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp16") / "small_fp16.onnx"
    result = export_fp16(small_onnx, out)
    return out, result


def test_graph_keeps_norms_fp32_and_float32_io(fp16_onnx):
    path, _ = fp16_onnx
    model = onnx.load(str(path))
    types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}
    assert types == {"x": TensorProto.FLOAT, "t": TensorProto.FLOAT, "c": TensorProto.FLOAT, "eps": TensorProto.FLOAT}
    inits = {i.name: i.data_type for i in model.graph.initializer}
    norms = [n for n in model.graph.node if n.op_type == "InstanceNormalization"]
    assert norms, "the exporter's GroupNorm is InstanceNormalization"
    for node in norms:
        assert all(inits[name] == TensorProto.FLOAT for name in node.input[1:])
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert all(inits[n.input[1]] == TensorProto.FLOAT16 for n in convs)
    assert spec_of(path).precision == "fp16"


def test_fp16_passes_gate_and_runs_through_the_runtime(fp16_onnx, small_onnx, rng):
    path, result = fp16_onnx
    assert result.psnr_db >= MIN_PSNR
    unet16, unet32 = OnnxUnet(path, device="cpu"), OnnxUnet(small_onnx, device="cpu")
    assert unet16.spec.precision == "fp16"
    x = rng.standard_normal((3, 3, 16, 16), dtype=np.float32)
    t, c = np.full((3, 1), 0.3, np.float32), np.eye(5, dtype=np.float32)[:3]
    eps16, eps32 = unet16(x, t, c), unet32(x, t, c)
    assert eps16.dtype == np.float32
    assert np.abs(eps16 - eps32).max() < 2e-2


def _broken(proto):
    """fp16 conversion plus a damaged weight: a model that must fail the gate."""
    model = to_fp16(proto)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    init = next(i for i in model.graph.initializer if i.name == conv.input[1])
    init.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(init) * 8).astype(np.float16), init.name))
    return model


def test_broken_fp16_fails_gate_and_leaves_no_file(small_onnx, tmp_path):
    out = tmp_path / "bad.onnx"
    with pytest.raises(ValidationFailed, match="quality gate"):
        export_fp16(small_onnx, out, convert=_broken)
    assert list(tmp_path.iterdir()) == []


def test_already_fp16_and_not_a_unet_are_refused(fp16_onnx, tmp_path):
    path, _ = fp16_onnx
    with pytest.raises(DdpmEdgeError, match="already fp16"):
        export_fp16(path, tmp_path / "again.onnx")
    with pytest.raises(DdpmEdgeError, match="not found"):
        export_fp16(tmp_path / "missing.onnx", tmp_path / "x.onnx")


def test_psnr():
    a = np.zeros((2, 3, 4, 4), np.float32)
    assert psnr(a, a) == float("inf")
    assert abs(psnr(a, a + 0.02) - 10 * np.log10(4 / 0.02 ** 2)) < 1e-6
    assert psnr(a, a + 5) == psnr(a, a + 1)  # clipped to [-1, 1]
