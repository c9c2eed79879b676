"""DDPM and DDIM steps in NumPy. A sampler holds no model: it lists its timesteps and maps
(x_i, eps, i, z) to x_prev. The torch twin lives in ddpm_ref/sampling.py; tests tie them together.

Shapes: x, eps, z are [N, C, H, W] float32.
"""
from __future__ import annotations

import numpy as np

from ..errors import DdpmEdgeError
from ..schedule import Schedule, ddim_timesteps, ddpm_timesteps

SAMPLERS = ("ddpm", "ddim")
DEFAULT_DDIM_STEPS = 25


class DDPMSampler:
    """The course's `denoise_add_noise`:

        x_{i-1} = (x_i − eps · (1 − α_i) / √(1 − ᾱ_i)) / √α_i + √β_i · z,   z = 0 at i = 1
    """

    name = "ddpm"

    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        self.timesteps = ddpm_timesteps(schedule)

    def needs_noise(self, i: int) -> bool:
        return i > 1

    def step(self, x: np.ndarray, eps: np.ndarray, i: int, z: np.ndarray | None = None) -> np.ndarray:
        s = self.schedule
        eps_coef = np.float32((1.0 - s.alphas[i]) / np.sqrt(1.0 - s.alphas_cumprod[i]))
        mean = (x - eps * eps_coef) / np.sqrt(s.alphas[i])
        if self.needs_noise(i):
            if z is None:
                raise DdpmEdgeError(f"DDPM step {i} needs noise z")
            mean = mean + np.sqrt(s.betas[i]) * z
        return mean.astype(np.float32, copy=False)


class DDIMSampler:
    """Course lesson 4's deterministic `denoise_ddim`, stride s = T // steps:

        x0   = (x_i − √(1 − ᾱ_i) · eps) / √ᾱ_i
        x_{i-s} = √ᾱ_{i-s} · x0 + √(1 − ᾱ_{i-s}) · eps
    """

    name = "ddim"

    def __init__(self, schedule: Schedule, steps: int = DEFAULT_DDIM_STEPS):
        self.schedule = schedule
        self.timesteps = ddim_timesteps(schedule, steps)
        self.stride = schedule.T // steps

    def needs_noise(self, i: int) -> bool:
        return False

    def prev(self, i: int) -> int:
        return max(i - self.stride, 0)

    def step(self, x: np.ndarray, eps: np.ndarray, i: int, z: np.ndarray | None = None) -> np.ndarray:
        ab = self.schedule.alphas_cumprod
        ab_t, ab_prev = ab[i], ab[self.prev(i)]
        x0 = (x - np.sqrt(1.0 - ab_t) * eps) * np.float32(np.sqrt(ab_prev) / np.sqrt(ab_t))
        return (x0 + np.sqrt(1.0 - ab_prev) * eps).astype(np.float32, copy=False)


def make_sampler(name: str, schedule: Schedule, steps: int | None = None):
    """`ddpm` always runs all T steps; `ddim` runs `steps` (default 25)."""
    name = name.lower()
    if name == "ddpm":
        if steps not in (None, schedule.T):
            raise DdpmEdgeError(f"ddpm runs all {schedule.T} steps; use --sampler ddim for {steps}")
        return DDPMSampler(schedule)
    if name == "ddim":
        return DDIMSampler(schedule, DEFAULT_DDIM_STEPS if steps is None else steps)
    raise DdpmEdgeError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
