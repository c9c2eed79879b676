"""The NumPy runtime on ONNX Runtime: metadata, batching, seeds, context, and no torch anywhere."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest

from ddpm_edge.runtime.api import SpriteGenerator, parse_context
from ddpm_edge.runtime.contract import ModelSpec
from ddpm_edge.runtime.errors import Cancelled, DdpmEdgeError
from ddpm_edge.runtime.backends.ort import OnnxUnet


def strip_metadata(src, dst, fixed_batch=None):
    proto = onnx.load(src)
    del proto.metadata_props[:]
    if fixed_batch:
        for value in list(proto.graph.input) + list(proto.graph.output):
            value.type.tensor_type.shape.dim[0].dim_value = fixed_batch
    onnx.save(proto, dst)
    return dst


def test_model_without_metadata_uses_course_defaults(small_onnx, tmp_path):
    unet = OnnxUnet(strip_metadata(small_onnx, tmp_path / "bare.onnx"))
    assert unet.spec.T == 500 and unet.spec.sample_shape == (3, 16, 16) and unet.spec.n_cfeat == 5
    assert unet.spec.context_names == ("hero", "non-hero", "food", "spell", "side-facing")
    a = SpriteGenerator(unet).generate_raw(2, seed=3, sampler="ddim", steps=5)
    b = SpriteGenerator.load(small_onnx).generate_raw(2, seed=3, sampler="ddim", steps=5)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_results_do_not_depend_on_batch_split(small_onnx, tmp_path):
    whole = SpriteGenerator.load(small_onnx).generate_raw(7, seed=11, sampler="ddim", steps=4, context="random")
    split = SpriteGenerator.load(small_onnx, max_batch=3).generate_raw(7, seed=11, sampler="ddim", steps=4,
                                                                      context="random")
    fixed = OnnxUnet(strip_metadata(small_onnx, tmp_path / "fixed4.onnx", fixed_batch=4))
    assert fixed.max_batch == 4
    padded = SpriteGenerator(fixed).generate_raw(7, seed=11, sampler="ddim", steps=4, context="random")
    np.testing.assert_allclose(split, whole, atol=1e-5)
    np.testing.assert_allclose(padded, whole, atol=1e-5)


def test_seeded_and_reproducible(small_onnx):
    gen = SpriteGenerator.load(small_onnx)
    a = gen.generate(3, seed=5, sampler="ddim", steps=3)
    b = gen.generate(3, seed=5, sampler="ddim", steps=3)
    c = gen.generate(3, seed=6, sampler="ddim", steps=3)
    assert a.dtype == np.uint8 and a.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cancel_through_progress(small_onnx):
    seen = []
    with pytest.raises(Cancelled):
        SpriteGenerator.load(small_onnx).generate_raw(1, sampler="ddim", steps=10,
                                                      progress=lambda done, total, x: seen.append(done) or done < 3)
    assert seen == [1, 2, 3]


def test_parse_context():
    spec = ModelSpec()
    np.testing.assert_array_equal(parse_context(spec, None, 2, 0), np.zeros((2, 5)))
    np.testing.assert_array_equal(parse_context(spec, "food", 2, 0), [[0, 0, 1, 0, 0]] * 2)
    np.testing.assert_array_equal(parse_context(spec, "Hero", 1, 0), [[1, 0, 0, 0, 0]])
    np.testing.assert_allclose(parse_context(spec, "1,0,0.6,0,0", 2, 0), [[1, 0, 0.6, 0, 0]] * 2)
    random = parse_context(spec, "random", 50, 1)
    assert (random.sum(1) == 1).all() and len(set(random.argmax(1))) > 1
    np.testing.assert_array_equal(random, parse_context(spec, "random", 50, 1))
    for bad, match in (("1,0", "5 values"), ("dragon", "unknown context"), ("1,x,0,0,0", "neither"),
                       ("nan,0,0,0,0", "finite")):
        with pytest.raises(DdpmEdgeError, match=match):
            parse_context(spec, bad, 2, 0)


@pytest.mark.parametrize("kwargs,match", [({"n": 0}, "at least 1"), ({"n": -3}, "at least 1"), ({"n": 2.5}, "integer"),
                                          ({"n": 1, "seed": -1}, "seed"), ({"n": 1, "sampler": "euler"}, "sampler"),
                                          ({"n": 1, "sampler": "ddpm", "steps": 10}, "ddim"),
                                          ({"n": 1, "guidance": -1.0}, "guidance")])
def test_bad_generation_arguments(small_onnx, kwargs, match):
    with pytest.raises(DdpmEdgeError, match=match):
        SpriteGenerator.load(small_onnx).generate_raw(**kwargs)


def test_bad_models(tmp_path, small_onnx):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a model at all")
    with pytest.raises(DdpmEdgeError, match="not a loadable ONNX model"):
        OnnxUnet(garbage)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(small_onnx.read_bytes()[:5000])
    with pytest.raises(DdpmEdgeError, match="not a loadable ONNX model"):
        OnnxUnet(truncated)
    with pytest.raises(DdpmEdgeError, match="not found"):
        OnnxUnet(tmp_path / "nope.onnx")
    proto = onnx.load(small_onnx)
    proto.graph.input[0].name = "image"
    for node in proto.graph.node:
        node.input[:] = ["image" if i == "x" else i for i in node.input]
    onnx.save(proto, tmp_path / "renamed.onnx")
    with pytest.raises(DdpmEdgeError, match="not a ddpm UNet"):
        OnnxUnet(tmp_path / "renamed.onnx")


BLOCK_TORCH = textwrap.dedent("""
    import sys
    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
    sys.meta_path.insert(0, BlockTorch())
""")


def test_runtime_never_imports_torch(small_onnx, tmp_path):
    """The runtime, its API and the ddpm-run CLI work with torch made unimportable."""
    out = tmp_path / "sheet.png"
    script = BLOCK_TORCH + textwrap.dedent(f"""
        import pkgutil, importlib
        import ddpm_edge.runtime as runtime
        for module in pkgutil.iter_modules(runtime.__path__):
            importlib.import_module("ddpm_edge.runtime." + module.name)
        from ddpm_edge.runtime.api import SpriteGenerator
        sprites = SpriteGenerator.load({str(small_onnx)!r}).generate(2, seed=1, sampler="ddim", steps=3)
        assert sprites.shape == (2, 16, 16, 3)
        from ddpm_edge.runtime.cli import main
        sys.argv = ["ddpm-run", "--engine", {str(small_onnx)!r}, "-n", "4", "--sampler", "ddim", "--steps", "3",
                    "--seed", "2", "--out", {str(out)!r}, "-q"]
        try:
            main()
        except SystemExit as e:
            assert e.code in (0, None), e.code
        assert "torch" not in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok") and out.is_file()
