"""Schedule golden values and timestep lists (course: T=500, β1=1e-4, β2=0.02, T+1 entries, ᾱ_0 = 1)."""
import numpy as np
import pytest

from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.schedule import Schedule, ddim_timesteps, ddpm_timesteps


def test_golden_values():
    s = Schedule()
    assert s.betas.shape == s.alphas.shape == s.alphas_cumprod.shape == (501,)
    assert s.betas.dtype == np.float32
    np.testing.assert_allclose(s.betas[[0, 1, 250, 500]], [1e-4, 1.398e-4, 1.005e-2, 0.02], rtol=1e-6)
    # ᾱ_0 is forced to 1, but ᾱ_1 = α_0·α_1 as in the course's cumsum-of-logs
    np.testing.assert_allclose(s.alphas_cumprod[[0, 1, 2, 250, 499, 500]],
                               [1.0, 0.9997602105, 0.9995806813, 0.2785597444, 0.0064171022, 0.0062887603],
                               rtol=2e-6)
    np.testing.assert_allclose(s.alphas, 1 - s.betas, rtol=0, atol=1e-7)


def test_matches_course_torch_formula():
    torch = pytest.importorskip("torch")
    b_t = (0.02 - 1e-4) * torch.linspace(0, 1, 501) + 1e-4
    a_t = 1 - b_t
    ab_t = torch.cumsum(a_t.log(), dim=0).exp()
    ab_t[0] = 1
    s = Schedule()
    np.testing.assert_allclose(s.betas, b_t.numpy(), atol=1e-8)
    np.testing.assert_allclose(s.alphas_cumprod, ab_t.numpy(), atol=3e-7)


def test_arrays_are_read_only():
    with pytest.raises(ValueError):
        Schedule().alphas_cumprod[3] = 0.5


def test_timesteps():
    s = Schedule()
    assert ddpm_timesteps(s) == list(range(500, 0, -1))
    assert ddim_timesteps(s, 25) == list(range(500, 0, -20))
    assert ddim_timesteps(s, 25)[-1] == 20 and len(ddim_timesteps(s, 25)) == 25
    assert ddim_timesteps(s, 30)[:3] == [500, 484, 468]          # s = 500 // 30 = 16, as the course does
    assert ddim_timesteps(s, 500) == list(range(500, 0, -1))
    assert s.t_input(250) == 0.5


@pytest.mark.parametrize("kwargs", [{"T": 0}, {"beta1": 0.0}, {"beta1": 0.5, "beta2": 0.1}, {"beta2": 1.0}])
def test_bad_schedule(kwargs):
    with pytest.raises(DdpmEdgeError):
        Schedule(**kwargs)


@pytest.mark.parametrize("steps", [0, -1, 501, 2.5])
def test_bad_ddim_steps(steps):
    with pytest.raises(DdpmEdgeError):
        ddim_timesteps(Schedule(), steps)
