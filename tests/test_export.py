"""ONNX export: one self-contained file, dynamic batch, metadata, validation that can fail."""
import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from ddpm_edge.ddpm_ref.checkpoint import load_checkpoint
from ddpm_edge.export.onnx_export import example_inputs, export_onnx
from ddpm_edge.runtime.contract import ModelSpec
from ddpm_edge.runtime.errors import DdpmEdgeError, ValidationFailed
from ddpm_edge.runtime.files import sha256_file
from ddpm_edge.runtime.backends.ort import OnnxUnet

from conftest import make_course_checkpoint


def test_single_file_with_dynamic_batch_and_metadata(small_checkpoint, small_onnx):
    assert not small_onnx.with_name(small_onnx.name + ".data").exists()
    assert list(small_onnx.parent.iterdir()) == [small_onnx]  # no temp files left behind
    proto = onnx.load(small_onnx)
    assert [i.name for i in proto.graph.input] == ["x", "t", "c"]
    assert [o.name for o in proto.graph.output] == ["eps"]
    for value in list(proto.graph.input) + list(proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in proto.metadata_props}
    spec = ModelSpec.from_metadata(meta)
    assert (spec.T, spec.beta1, spec.beta2) == (500, 1e-4, 0.02)
    assert spec.sample_shape == (3, 16, 16) and spec.n_cfeat == 5
    assert spec.context_names == ("hero", "non-hero", "food", "spell", "side-facing")
    assert spec.shortcut == "seed:0"
    assert spec.source_sha256 == sha256_file(small_checkpoint)
    assert spec.version


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_onnx_matches_torch(small_checkpoint, small_onnx, n):
    model = load_checkpoint(small_checkpoint).model
    unet = OnnxUnet(small_onnx, device="cpu")
    x, t, c = example_inputs(unet.spec, n, seed=100 + n)
    with torch.no_grad():
        expected = model(*(torch.from_numpy(a) for a in (x, t, c))).numpy()
    assert np.abs(unet(x, t, c) - expected).max() <= 1e-4


def test_course_example_exports(course_dir, tmp_path):
    result = export_onnx(course_dir / "course_format_example.pth", tmp_path / "unet.onnx")
    assert max(result.max_abs_error.values()) <= 1e-4
    ref = np.load(course_dir / "course_format_example_ref.npz")
    eps = OnnxUnet(result.path, device="cpu")(ref["x"], ref["t"], ref["c"])
    np.testing.assert_allclose(eps, ref["eps_after_manual_seed_0"], atol=1e-4)


def test_zero_shortcut_recorded(small_checkpoint, tmp_path):
    result = export_onnx(small_checkpoint, tmp_path / "zero.onnx", shortcut="zero")
    assert OnnxUnet(result.path).spec.shortcut == "zero"


def test_other_sizes(tmp_path):
    path = make_course_checkpoint(tmp_path / "mnist.pth", 1, 32, 10, 28)
    result = export_onnx(path, tmp_path / "mnist.onnx")
    unet = OnnxUnet(result.path)
    assert unet.spec.sample_shape == (1, 28, 28) and unet.spec.n_cfeat == 10
    assert unet(*example_inputs(unet.spec, 3, seed=1)).shape == (3, 1, 28, 28)


def test_failed_validation_leaves_no_file(small_checkpoint, tmp_path):
    out = tmp_path / "unet.onnx"
    with pytest.raises(ValidationFailed, match="nothing written"):
        export_onnx(small_checkpoint, out, tolerance=-1.0)  # any error exceeds a negative tolerance
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_fail_before_work(tmp_path):
    with pytest.raises(DdpmEdgeError, match="does not exist"):
        export_onnx(tmp_path / "x.pth", tmp_path / "missing-dir" / "u.onnx")
    with pytest.raises(DdpmEdgeError, match="not found"):
        export_onnx(tmp_path / "x.pth", tmp_path / "u.onnx")
    assert list(tmp_path.iterdir()) == []
