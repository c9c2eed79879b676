"""The step update exists twice on purpose (torch reference, NumPy runtime): tie them together, first
step by step with identical model outputs and noise, then whole sampling runs on ONNX Runtime."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ddpm_edge.ddpm_ref import sampling as ref
from ddpm_edge.ddpm_ref.checkpoint import load_checkpoint
from ddpm_edge.runtime.backends.ort import OnnxUnet
from ddpm_edge.runtime.solvers import DDIMSampler, DDPMSampler
from ddpm_edge.runtime.sampling import InjectedNoise, sample
from ddpm_edge.runtime.schedule import Schedule


@pytest.mark.parametrize("i", [500, 250, 2, 1])
def test_ddpm_step_parity(rng, i):
    s = Schedule()
    x, eps, z = (rng.standard_normal((4, 3, 16, 16), dtype=np.float32) for _ in range(3))
    ours = DDPMSampler(s).step(x, eps, i, z)
    theirs = ref.denoise_add_noise(*(torch.from_numpy(a) for a in (x, eps)), i,
                                   torch.from_numpy(z) if i > 1 else 0, s).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


@pytest.mark.parametrize("steps,i", [(25, 500), (25, 20), (30, 20), (7, 71)])
def test_ddim_step_parity(rng, steps, i):
    s = Schedule()
    sampler = DDIMSampler(s, steps)
    x, eps = (rng.standard_normal((4, 3, 16, 16), dtype=np.float32) for _ in range(2))
    ours = sampler.step(x, eps, i)
    theirs = ref.denoise_ddim(torch.from_numpy(x), torch.from_numpy(eps), i, sampler.prev(i), s).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


def test_ddpm_adds_no_noise_at_last_step(rng):
    s = Schedule()
    x, eps, z = (rng.standard_normal((2, 3, 4, 4), dtype=np.float32) for _ in range(3))
    sampler = DDPMSampler(s)
    assert not sampler.needs_noise(1) and sampler.needs_noise(2)
    np.testing.assert_array_equal(sampler.step(x, eps, 1, z), sampler.step(x, eps, 1, None))
    assert not np.allclose(sampler.step(x, eps, 2, z), sampler.step(x, eps, 2, np.zeros_like(z)))


@pytest.fixture(scope="module")
def model_and_onnx(tmp_path_factory, course_dir=None):
    """The course example checkpoint when ../shared is there, else the small random one."""
    from conftest import COURSE, make_course_checkpoint
    from ddpm_edge.export.onnx_export import export_onnx

    path = COURSE / "course_format_example.pth"
    if not path.is_file():
        path = make_course_checkpoint(tmp_path_factory.mktemp("p") / "small.pth")
    out = tmp_path_factory.mktemp("p") / "unet.onnx"
    export_onnx(path, out)
    return load_checkpoint(path).model, OnnxUnet(out, device="cpu")


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_full_sampler_parity(model_and_onnx, kind):
    model, unet = model_and_onnx
    s = Schedule()
    n = 3
    rng = np.random.default_rng(7)
    x_T = rng.standard_normal((n, 3, 16, 16), dtype=np.float32)
    c = np.eye(5, dtype=np.float32)[[0, 2, 4]]
    if kind == "ddpm":
        sampler = DDPMSampler(s)
        z = rng.standard_normal((s.T, n, 3, 16, 16), dtype=np.float32)
        expected = ref.sample_ddpm(model, s, torch.from_numpy(x_T), torch.from_numpy(c), z=torch.from_numpy(z))
    else:
        sampler, z = DDIMSampler(s, 25), None
        expected = ref.sample_ddim(model, s, torch.from_numpy(x_T), torch.from_numpy(c), steps=25)
    calls = []

    def counting_unet(x, t, cc):
        calls.append(x.shape[0])
        return unet(x, t, cc)

    ours = sample(counting_unet, sampler, (n, 3, 16, 16), c, noise=InjectedNoise(x_T, z))
    assert len(calls) == len(sampler.timesteps)  # one UNet call per step
    diff = np.abs(ours - expected.numpy()).max()
    assert diff <= 1e-3, diff
