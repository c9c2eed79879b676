"""The device-resident loop and IO binding, checked on ONNX Runtime's CPU provider (same code path as CUDA
but for the device name): same seed → same sprites as the NumPy loop."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from ddpm_edge.export.step_export import export_loop, fuse_loop  # noqa: E402
from ddpm_edge.runtime.backends import ort_cuda as onnx_cuda  # noqa: E402
from ddpm_edge.runtime.api import SpriteGenerator  # noqa: E402
from ddpm_edge.runtime.errors import Cancelled, DdpmEdgeError, MissingDependency  # noqa: E402
from ddpm_edge.runtime.backends.ort import OnnxUnet  # noqa: E402
from ddpm_edge.runtime.backends.ort_cuda import OrtIoUnet, is_loop_model, load_gpu_backend, load_loop  # noqa: E402
from ddpm_edge.runtime.sampling import InjectedNoise  # noqa: E402

HAS_CUDA = "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers()


@pytest.fixture(scope="module")
def loop_onnx(small_onnx, tmp_path_factory):
    return export_loop(small_onnx, tmp_path_factory.mktemp("loop") / "small_loop.onnx")


@pytest.fixture(scope="module")
def numpy_gen(small_onnx):
    return SpriteGenerator(OnnxUnet(small_onnx, device="cpu"))


def test_loop_file_describes_itself(loop_onnx, small_onnx):
    assert is_loop_model(loop_onnx) and not is_loop_model(small_onnx)
    loop = load_loop(loop_onnx, device="cpu")
    assert loop.spec.sample_shape == (3, 16, 16) and loop.spec.extra.get("graph") == "ddpm-loop/1"
    with pytest.raises(DdpmEdgeError, match="already a fused loop"):
        fuse_loop(onnx.load(str(loop_onnx)))
    unet = onnx.load(str(small_onnx))
    old = unet.graph.node[0].output[0]
    for node in unet.graph.node:                 # a UNet tensor renamed like a loop input
        for names in (node.input, node.output):
            names[:] = ["noise" if name == old else name for name in names]
    onnx.checker.check_model(unet)
    with pytest.raises(DdpmEdgeError, match=r"tensors named \['noise'\]"):
        fuse_loop(unet)


def test_ddim25_same_seed_same_sprites(loop_onnx, numpy_gen):
    loop_gen = SpriteGenerator(load_loop(loop_onnx, device="cpu"))
    kwargs = dict(seed=7, sampler="ddim", steps=25, context="random")
    a, b = numpy_gen.generate_raw(5, **kwargs), loop_gen.generate_raw(5, **kwargs)
    assert np.abs(a - b).max() <= 1e-3
    again = loop_gen.generate_raw(5, **kwargs)    # cached buffers are reset between calls
    assert np.array_equal(b, again)


def test_ddpm_noise_order_and_blocks(small_onnx, numpy_gen, monkeypatch):
    """DDPM-500 with the noise uploaded in blocks of 7 draws (forced), fused in memory from a plain UNet."""
    monkeypatch.setattr(onnx_cuda, "NOISE_BLOCK_BYTES", 7 * 2 * 3 * 16 * 16 * 4)
    loop_gen = SpriteGenerator(load_loop(small_onnx, device="cpu"))
    a = numpy_gen.generate_raw(2, seed=3, sampler="ddpm", context="hero")
    b = loop_gen.generate_raw(2, seed=3, sampler="ddpm", context="hero")
    assert np.abs(a - b).max() <= 1e-3


def test_injected_noise(loop_onnx, numpy_gen, rng):
    steps = 10
    x_T = rng.standard_normal((3, 3, 16, 16), dtype=np.float32)
    loop_gen = SpriteGenerator(load_loop(loop_onnx, device="cpu"))
    a = numpy_gen.generate_raw(3, sampler="ddim", steps=steps, noise=InjectedNoise(x_T))
    b = loop_gen.generate_raw(3, sampler="ddim", steps=steps, noise=InjectedNoise(x_T))
    assert np.abs(a - b).max() <= 1e-4


def test_progress_and_cancel(loop_onnx):
    loop_gen = SpriteGenerator(load_loop(loop_onnx, device="cpu"))
    seen = []
    loop_gen.generate_raw(2, seed=1, sampler="ddim", steps=20, progress=lambda d, t, x: seen.append((d, t, x.shape)))
    assert seen[-1] == (20, 20, (2, 3, 16, 16)) and len(seen) == 20
    with pytest.raises(Cancelled):
        loop_gen.generate_raw(2, seed=1, sampler="ddim", steps=20, progress=lambda d, t, x: False)


@pytest.fixture(scope="module")
def shipped_onnx():
    """The shipped trained model: its output depends on the context, so guidance visibly matters (in
    the small random model it moves sprites by less than the parity tolerance)."""
    from ddpm_edge.runtime.backends import default_model_path

    return default_model_path()


@pytest.mark.parametrize("sampler,steps,weights", [("ddim", 25, (2.0, 0.5)), ("ddpm", None, (2.0,))])
def test_guidance_on_the_device(shipped_onnx, sampler, steps, weights):
    """A loop fused from a plain UNet makes its guided graph on demand: same sprites as the NumPy loop
    with the guided() wrapper; guidance 0 still runs the plain graph."""
    numpy_gen = SpriteGenerator(OnnxUnet(shipped_onnx, device="cpu"))
    loop = load_loop(shipped_onnx, device="cpu")
    loop_gen = SpriteGenerator(loop)
    kwargs = dict(seed=11, sampler=sampler, steps=steps, context="food")
    plain = numpy_gen.generate_raw(3, **kwargs)
    assert np.abs(loop_gen.generate_raw(3, **kwargs) - plain).max() <= 1e-3
    assert loop._guided_twin is None
    for w in weights:
        a, b = numpy_gen.generate_raw(3, guidance=w, **kwargs), loop_gen.generate_raw(3, guidance=w, **kwargs)
        assert np.abs(a - b).max() <= 1e-3
        assert np.abs(a - plain).max() > 0.1        # guidance changed the sprites far beyond the tolerance
    assert not loop.guided and loop._guided_twin.guided


def test_exported_guided_loop(shipped_onnx, loop_onnx, tmp_path):
    numpy_gen = SpriteGenerator(OnnxUnet(shipped_onnx, device="cpu"))
    guided_file = export_loop(shipped_onnx, tmp_path / "guided_loop.onnx", guided=True)
    model = onnx.load(str(guided_file))
    assert {p.key: p.value for p in model.metadata_props}["guidance"] == "cfg"
    assert [i.name for i in model.graph.input][-1] == "w"
    guided_gen = SpriteGenerator(load_loop(guided_file, device="cpu"))
    kwargs = dict(seed=4, sampler="ddim", steps=10, context="face")
    for w in (0.0, 3.0):        # a guided graph also runs w = 0 (eps(c) exactly)
        a, b = numpy_gen.generate_raw(2, guidance=w, **kwargs), guided_gen.generate_raw(2, guidance=w, **kwargs)
        assert np.abs(a - b).max() <= 1e-3
    plain_file_gen = SpriteGenerator(load_loop(loop_onnx, device="cpu"))   # no UNet to fuse a guided graph from
    with pytest.raises(DdpmEdgeError, match="--loop-guidance"):
        plain_file_gen.generate_raw(2, guidance=1.0, seed=4, sampler="ddim", steps=10)


def test_animation_frames_from_the_device_loop(loop_onnx, numpy_gen):
    """An animation gets the same frames from the loop as from the NumPy loop, although the loop
    otherwise reports x only about every 5% of the steps."""
    from ddpm_edge.runtime.params import GenerationParams

    params = GenerationParams(n=2, sampler="ddpm", seed=6, context="random")
    loop_gen = SpriteGenerator(load_loop(loop_onnx, device="cpu"))
    a, b = numpy_gen.generate_batch(params, frames_every=7), loop_gen.generate_batch(params, frames_every=7)
    assert len(a.frames) == len(b.frames) == 71             # steps 7, 14, …, 497
    assert max(int(np.abs(fa.astype(int) - fb).max()) for fa, fb in zip(a.frames, b.frames)) <= 1
    calls = []
    loop_gen.generate_raw(2, seed=6, sampler="ddpm", progress=lambda done, total, x: calls.append(done))
    assert len(calls) == 20                                  # a plain progress bar: every 25 of 500 steps


def test_io_binding_unet_matches_plain_session(small_onnx, rng):
    plain, bound = OnnxUnet(small_onnx, device="cpu"), OrtIoUnet(small_onnx, device="cpu", max_batch=3)
    for n in (1, 4, 7):   # 4 and 7 are split into chunks of 3 (buffers per chunk size)
        x = rng.standard_normal((n, 3, 16, 16), dtype=np.float32)
        t, c = np.full((n, 1), 0.5, np.float32), np.zeros((n, 5), np.float32)
        assert np.abs(bound(x, t, c) - plain(x, t, c)).max() < 1e-5
    a = SpriteGenerator(plain).generate_raw(4, seed=2, sampler="ddim", steps=5, guidance=0.5)
    b = SpriteGenerator(bound).generate_raw(4, seed=2, sampler="ddim", steps=5, guidance=0.5)
    assert np.abs(a - b).max() < 1e-4


@pytest.mark.skipif(HAS_CUDA, reason="checks the refusal on a machine without ONNX Runtime CUDA")
def test_cuda_graph_and_cuda_device_need_the_cuda_provider(small_onnx, loop_onnx):
    with pytest.raises(MissingDependency, match="CUDA"):
        OrtIoUnet(small_onnx, device="cpu", cuda_graph=True)
    with pytest.raises(MissingDependency, match="cuda"):
        load_gpu_backend(loop_onnx, device="cuda", gpu_loop=True)


def test_loop_cuda_graphs_need_onnxruntime_1_18(loop_onnx, monkeypatch):
    """Two graphs in one session (gpu_graph_id) came in ONNX Runtime 1.18; an older one would silently
    replay one graph for both ping-pong buffers."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", "1.17.3")
    with pytest.raises(MissingDependency, match=">= 1.18.*1.17.3"):
        load_loop(loop_onnx, device="cpu", cuda_graph=True)
    assert onnx_cuda.ort_version(onnxruntime) == (1, 17)


def test_gpu_options_refuse_engines_and_max_batch(loop_onnx, tmp_path):
    with pytest.raises(DdpmEdgeError, match=".onnx models"):
        load_gpu_backend(tmp_path / "unet.plan", io_binding=True)
    with pytest.raises(DdpmEdgeError, match="max-batch"):
        load_gpu_backend(loop_onnx, device="cpu", gpu_loop=True, max_batch=4)


@pytest.mark.skipif(not HAS_CUDA, reason="no ONNX Runtime CUDA provider (onnxruntime-gpu + NVIDIA GPU) here")
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_loop_matches_numpy_loop(loop_onnx, numpy_gen, cuda_graph):  # pragma: no cover - GPU only
    loop_gen = SpriteGenerator(load_loop(loop_onnx, device="cuda", cuda_graph=cuda_graph))
    for n in (4, 4, 9):   # the second call replays the captured graph
        a = numpy_gen.generate_raw(n, seed=5, sampler="ddim", steps=25)
        b = loop_gen.generate_raw(n, seed=5, sampler="ddim", steps=25)
        assert np.abs(a - b).max() <= 1e-3
    a = numpy_gen.generate_raw(3, seed=5, sampler="ddpm", context="random")
    assert np.abs(loop_gen.generate_raw(3, seed=5, sampler="ddpm", context="random") - a).max() <= 1e-3


@pytest.mark.skipif(not HAS_CUDA, reason="no ONNX Runtime CUDA provider (onnxruntime-gpu + NVIDIA GPU) here")
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_guided_loop_matches_numpy_loop(shipped_onnx, cuda_graph):  # pragma: no cover - GPU only
    numpy_gen = SpriteGenerator(OnnxUnet(shipped_onnx, device="cpu"))
    loop_gen = SpriteGenerator(load_loop(shipped_onnx, device="cuda", cuda_graph=cuda_graph))
    for n, w in ((16, 2.0), (16, 0.5), (5, 2.0)):   # a replayed graph must read the new w
        a = numpy_gen.generate_raw(n, seed=8, sampler="ddim", steps=25, context="animal", guidance=w)
        b = loop_gen.generate_raw(n, seed=8, sampler="ddim", steps=25, context="animal", guidance=w)
        assert np.abs(a - b).max() <= 1e-3


@pytest.mark.skipif(not HAS_CUDA, reason="no ONNX Runtime CUDA provider (onnxruntime-gpu + NVIDIA GPU) here")
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_io_binding_matches_cpu(small_onnx, rng, cuda_graph):  # pragma: no cover - GPU only
    plain, bound = OnnxUnet(small_onnx, device="cpu"), OrtIoUnet(small_onnx, device="cuda", cuda_graph=cuda_graph)
    for n in (2, 2, 5):
        x = rng.standard_normal((n, 3, 16, 16), dtype=np.float32)
        t, c = np.full((n, 1), 0.5, np.float32), np.zeros((n, 5), np.float32)
        assert np.abs(bound(x, t, c) - plain(x, t, c)).max() < 1e-3


def test_ddim_eta_and_spacing_on_the_device_loop(loop_onnx, numpy_gen):
    """DDIM with η > 0 (noise per step) and a non-uniform spacing: the step table carries σ_i."""
    loop_gen = SpriteGenerator(load_loop(loop_onnx, device="cpu"))
    kwargs = dict(seed=4, sampler="ddim", steps=8, eta=0.6, spacing="karras", context="random")
    a, b = numpy_gen.generate_raw(3, **kwargs), loop_gen.generate_raw(3, **kwargs)
    assert np.abs(a - b).max() <= 1e-3
    with pytest.raises(DdpmEdgeError, match="--gpu-loop runs only the ddpm and ddim steps"):
        loop_gen.generate_raw(3, seed=4, sampler="dpmpp-2m-sde", steps=8)
