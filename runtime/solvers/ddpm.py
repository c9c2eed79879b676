"""DDPM ancestral sampling, the course's `denoise_add_noise` (Ho et al. 2020, Alg. 2), every index T … 1.

Shapes: x, eps, z are [N, C, H, W] float32.
"""
from __future__ import annotations

import numpy as np

from ..errors import DdpmEdgeError
from ..schedule import Schedule, ddpm_timesteps


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
