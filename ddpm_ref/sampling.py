"""The torch reference of the course's samplers, with injectable noise.

The step formulas deliberately repeat runtime/solvers/ in torch (the course's own code is torch);
tests feed both identical model outputs and noise. The schedule comes from the NumPy runtime.
"""
from __future__ import annotations

import torch

from ddpm_edge.runtime.schedule import Schedule, ddim_timesteps, ddpm_timesteps


def schedule_tensors(schedule: Schedule, device="cpu"):
    """(betas, alphas, alphas_cumprod) as float32 tensors [T+1]."""
    return tuple(torch.from_numpy(a.copy()).to(device) for a in (schedule.betas, schedule.alphas, schedule.alphas_cumprod))


def denoise_add_noise(x, eps, i: int, z, schedule: Schedule):
    """Course DDPM step: (x − eps·(1−α_i)/√(1−ᾱ_i)) / √α_i + √β_i·z  (z = 0 at i = 1)."""
    b_t, a_t, ab_t = schedule_tensors(schedule, x.device)
    noise = b_t.sqrt()[i] * z
    mean = (x - eps * ((1 - a_t[i]) / (1 - ab_t[i]).sqrt())) / a_t[i].sqrt()
    return mean + noise


def denoise_ddim(x, eps, i: int, i_prev: int, schedule: Schedule):
    """Course lesson 4 DDIM step from index i to i_prev."""
    ab_t = schedule_tensors(schedule, x.device)[2]
    ab, ab_prev = ab_t[i], ab_t[i_prev]
    x0_pred = ab_prev.sqrt() / ab.sqrt() * (x - (1 - ab).sqrt() * eps)
    dir_xt = (1 - ab_prev).sqrt() * eps
    return x0_pred + dir_xt


@torch.no_grad()
def sample_ddpm(model, schedule: Schedule, x_T, c=None, z=None, generator=None):
    """DDPM from x_T [N,C,H,W]; z [T-1... ] injected per timestep in loop order (else drawn)."""
    x = x_T.clone()
    for k, i in enumerate(ddpm_timesteps(schedule)):
        t = torch.full((x.shape[0], 1), i / schedule.T, dtype=x.dtype, device=x.device)
        if i > 1:
            noise = z[k] if z is not None else torch.randn(x.shape, generator=generator, device=x.device)
        else:
            noise = 0
        eps = model(x, t, c)
        x = denoise_add_noise(x, eps, i, noise, schedule)
    return x


@torch.no_grad()
def sample_ddim(model, schedule: Schedule, x_T, c=None, steps: int = 25):
    x = x_T.clone()
    stride = schedule.T // steps
    for i in ddim_timesteps(schedule, steps):
        t = torch.full((x.shape[0], 1), i / schedule.T, dtype=x.dtype, device=x.device)
        eps = model(x, t, c)
        x = denoise_ddim(x, eps, i, max(i - stride, 0), schedule)
    return x
