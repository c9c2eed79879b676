"""Portable, deterministic export: the shipped unet.onnx is reproducible byte for byte from model.pth,
declares the lowest opset/IR its ops need, and writes GELU in the form OpenCV's DNN importer loads."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

from ddpm_edge.export.onnx_export import example_inputs, export_onnx
from ddpm_edge.export.pipeline import run_export
from ddpm_edge.export.portable import check_gelu_form, lowest_opset
from ddpm_edge.runtime.backends.ort import OnnxUnet
from ddpm_edge.runtime.errors import DdpmEdgeError

from conftest import ROOT

SHIPPED = ROOT / "weights" / "unet.onnx"
CHECKPOINT = ROOT / "weights" / "model.pth"


def test_reexport_reproduces_shipped_file(tmp_path):
    """weights/README.md's command (`ddpm-export --weights weights/model.pth --out weights/unet.onnx`)."""
    out = tmp_path / "unet.onnx"
    run_export(CHECKPOINT, None, out)
    assert out.read_bytes() == SHIPPED.read_bytes()


def test_same_bytes_twice_in_one_process(small_checkpoint, small_onnx, tmp_path):
    # the exporter's name counters are process-global: a second export in the same process used to differ
    again = export_onnx(small_checkpoint, tmp_path / "again.onnx").path
    assert again.read_bytes() == small_onnx.read_bytes()
    other = export_onnx(small_checkpoint, tmp_path / "zero.onnx", shortcut="zero").path
    assert other.read_bytes() != small_onnx.read_bytes()  # options do reach the file


def test_shipped_file_is_portable():
    proto = onnx.load(SHIPPED)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 15)]
    assert lowest_opset(proto) == 15  # Shape-15 (start/end) is the newest schema it uses
    assert proto.ir_version == 8  # ONNX Runtime 1.16 reads IR <= 9
    assert check_gelu_form(proto) == 23  # every GELU of the ContextUnet
    assert not any(n.op_type == "Gelu" for n in proto.graph.node)
    data = SHIPPED.read_bytes()
    for leak in (b"stack_trace", b"/work/", b"site-packages", b"pkg.torch"):
        assert leak not in data
    keys = [p.key for p in proto.metadata_props]
    assert keys == sorted(keys) and {"context_names", "shortcut", "source_sha256", "T"} <= set(keys)
    assert proto.producer_name == "ddpm-edge"


def _gelu_graph(portable: bool):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    consts = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
              (("sqrt2", 2 ** 0.5), ("one", 1.0), ("half", 0.5))]
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"])]
    if portable:   # (x·(1+erf))·0.5
        nodes += [helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    else:          # x·(0.5·(1+erf)): torch's form, which crashes OpenCV DNN
        nodes += [helper.make_node("Mul", ["half", "a"], ["m"]), helper.make_node("Mul", ["x", "m"], ["y"])]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], consts), opset_imports=[helper.make_opsetid("", 18)])


def test_gelu_form_check_can_fail():
    assert check_gelu_form(_gelu_graph(True)) == 1
    with pytest.raises(DdpmEdgeError, match="portable"):
        check_gelu_form(_gelu_graph(False))
    assert lowest_opset(_gelu_graph(True)) == 14  # Div/Add/Mul-14, Erf-13


def test_fixed_batch(small_checkpoint, small_onnx, tmp_path):
    fixed = export_onnx(small_checkpoint, tmp_path / "fixed.onnx", fixed_batch=2).path
    proto = onnx.load(fixed)
    for value in list(proto.graph.input) + list(proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_value == 2
    unet, dynamic = OnnxUnet(fixed), OnnxUnet(small_onnx)
    assert unet.fixed_batch == 2
    inputs = example_inputs(dynamic.spec, 5, seed=3)  # 5 rows: chunks of 2, the last one padded
    np.testing.assert_allclose(unet(*inputs), dynamic(*inputs), atol=1e-5)


def test_fixed_batch_needs_a_fresh_export(small_onnx, tmp_path):
    with pytest.raises(DdpmEdgeError, match="--fixed-batch"):
        run_export(None, small_onnx, tmp_path / "o.onnx", fixed_batch=2, fp16=True)
    with pytest.raises(DdpmEdgeError, match=">= 1"):
        export_onnx(small_onnx, tmp_path / "o.onnx", fixed_batch=0)
    assert list(tmp_path.iterdir()) == []
