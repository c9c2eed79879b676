"""Classifier-free guidance in the runtime: its arithmetic against torch, one batched call per step."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ddpm_edge.ddpm_ref.model import ContextUnet  # noqa: E402
from ddpm_edge.ddpm_ref.sampling import sample_ddim, sample_ddpm  # noqa: E402
from ddpm_edge.runtime.api import SpriteGenerator  # noqa: E402
from ddpm_edge.runtime.contract import ModelSpec  # noqa: E402
from ddpm_edge.runtime.errors import DdpmEdgeError  # noqa: E402
from ddpm_edge.runtime.solvers import DDIMSampler, DDPMSampler  # noqa: E402
from ddpm_edge.runtime.sampling import InjectedNoise, guided, sample  # noqa: E402
from ddpm_edge.runtime.schedule import Schedule  # noqa: E402

SCHEDULE = Schedule(T=40)  # short, so a full DDPM loop takes a moment
N, W = 3, 2.5


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    unet = ContextUnet(3, 8, 5, 16)
    unet.init_conv.set_shortcut("learned")
    return unet.eval()


class CountingUnet:
    """The torch model as a NumPy backend, recording each call's (x, t, c)."""

    def __init__(self, model):
        self.model, self.calls = model, []
        self.spec = ModelSpec(T=SCHEDULE.T, context_names=("face", "person", "animal", "food", "object"))
        self.sha256, self.max_batch = "0" * 64, None

    def __call__(self, x, t, c):
        self.calls.append((x.copy(), t.copy(), c.copy()))
        with torch.no_grad():
            return self.model(*(torch.from_numpy(a) for a in (x, t, c))).numpy()


def torch_guided(model, w):
    """The reference: two separate torch calls, combined as (1 + w)·eps(c) − w·eps(0)."""
    def eps(x, t, c):
        return (1 + w) * model(x, t, c) - w * model(x, t, torch.zeros_like(c))
    return eps


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, 3, 16, 16), dtype=np.float32)
    c = np.eye(5, dtype=np.float32)[[0, 3, 4]]
    return x, c, rng


def test_one_call_matches_torch(model):
    x, c, rng = inputs()
    t = rng.integers(1, 41, (N, 1)).astype(np.float32) / 40
    unet = CountingUnet(model)
    eps = guided(unet, W)(x, t, c)
    with torch.no_grad():
        reference = torch_guided(model, W)(*(torch.from_numpy(a) for a in (x, t, c))).numpy()
    np.testing.assert_allclose(eps, reference, atol=1e-5)
    assert len(unet.calls) == 1
    bx, bt, bc = unet.calls[0]
    assert bx.shape[0] == 2 * N and np.array_equal(bx[:N], bx[N:]) and np.array_equal(bt[:N], bt[N:])
    assert np.array_equal(bc[:N], c) and not bc[N:].any()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_guided_sampling_matches_torch_with_one_batched_call_per_step(model, sampler):
    x_T, c, rng = inputs(1)
    steps = 8
    step_sampler = DDPMSampler(SCHEDULE) if sampler == "ddpm" else DDIMSampler(SCHEDULE, steps)
    z = rng.standard_normal((len(step_sampler.timesteps), N, 3, 16, 16), dtype=np.float32)
    unet = CountingUnet(model)
    ours = sample(guided(unet, W), step_sampler, (N, 3, 16, 16), c, noise=InjectedNoise(x_T, z))
    reference_model = torch_guided(model, W)
    with torch.no_grad():
        if sampler == "ddpm":
            reference = sample_ddpm(reference_model, SCHEDULE, torch.from_numpy(x_T), torch.from_numpy(c),
                                    z=torch.from_numpy(z))
        else:
            reference = sample_ddim(reference_model, SCHEDULE, torch.from_numpy(x_T), torch.from_numpy(c), steps=steps)
    np.testing.assert_allclose(ours, reference.numpy(), atol=1e-4)
    assert len(unet.calls) == len(step_sampler.timesteps)
    for (bx, bt, bc), i in zip(unet.calls, step_sampler.timesteps):
        assert bx.shape[0] == 2 * N and np.all(bt == np.float32(i / SCHEDULE.T))
        assert np.array_equal(bc[:N], c) and not bc[N:].any()


@pytest.mark.parametrize("sampler, steps", [("ddpm", None), ("ddim", 5)])
def test_api_guidance_is_one_batched_call_per_step(model, sampler, steps):
    unet = CountingUnet(model)
    generator = SpriteGenerator(unet)
    sprites = generator.generate(2, context="food", seed=0, sampler=sampler, steps=steps, guidance=1.0)
    assert sprites.shape == (2, 16, 16, 3) and sprites.dtype == np.uint8
    assert len(unet.calls) == (SCHEDULE.T if sampler == "ddpm" else 5)
    assert all(bx.shape[0] == 4 for bx, _, _ in unet.calls)
    food = np.eye(5, dtype=np.float32)[3]
    assert all(np.array_equal(bc[:2], [food, food]) and not bc[2:].any() for _, _, bc in unet.calls)


def test_zero_weight_is_the_plain_model_and_bad_weights_fail(model):
    unet = CountingUnet(model)
    assert guided(unet, 0.0) is unet
    for w in (-0.5, float("nan"), float("inf")):
        with pytest.raises(DdpmEdgeError, match="guidance"):
            guided(unet, w)
