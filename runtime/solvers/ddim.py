"""DDIM (Song et al. 2021, arXiv:2010.02502), the course's lesson-4 `denoise_ddim` at η = 0, with η > 0 adding
fresh noise per step (eq. 12 with σ_t of eq. 16).

Shapes: x, eps, z are [N, C, H, W] float32.
"""
from __future__ import annotations

import numpy as np

from ..errors import DdpmEdgeError
from ..schedule import Schedule
from .spacing import make_timesteps

DEFAULT_DDIM_STEPS = 25


class DDIMSampler:
    """Course lesson 4's deterministic `denoise_ddim` (η = 0), stride s = T // steps with uniform spacing:

        x0      = (x_i − √(1 − ᾱ_i) · eps) / √ᾱ_i
        x_prev  = √ᾱ_prev · x0 + √(1 − ᾱ_prev − σ_i²) · eps + σ_i · z              (eq. 12)
        σ_i     = η · √((1 − ᾱ_prev) / (1 − ᾱ_i)) · √(1 − ᾱ_i / ᾱ_prev)            (eq. 16)

    prev is the next index of `timesteps`, 0 (ᾱ_0 = 1) after the last, so the last step returns x0 and
    takes no noise. η = 0 keeps the course's float32 expression, bit for bit; η > 0 uses coefficients
    precomputed in float64: x_prev = a·x + b·eps + σ·z.
    """

    name = "ddim"

    def __init__(self, schedule: Schedule, steps: int = DEFAULT_DDIM_STEPS, eta: float = 0.0,
                 spacing: str = "uniform"):
        self.schedule = schedule
        self.timesteps = make_timesteps(schedule, steps, spacing)
        self.stride = schedule.T // steps
        self.spacing = spacing
        self.eta = float(eta)
        self._prev = dict(zip(self.timesteps, self.timesteps[1:] + [0]))
        self._coef = {}                                   # i -> (a, b, σ) float32, η > 0 only
        self._sigma = {}                                  # i -> σ_i float64, η > 0 only
        if self.eta > 0:
            ab = schedule.alphas_cumprod.astype(np.float64)
            for i, p in self._prev.items():
                sigma = self.eta * np.sqrt((1.0 - ab[p]) / (1.0 - ab[i])) * np.sqrt(1.0 - ab[i] / ab[p])
                self._sigma[i] = float(sigma)
                direction = np.sqrt(max(1.0 - ab[p] - sigma ** 2, 0.0))
                a = np.sqrt(ab[p]) / np.sqrt(ab[i])
                self._coef[i] = (np.float32(a), np.float32(direction - a * np.sqrt(1.0 - ab[i])), np.float32(sigma))

    def sigma(self, i: int) -> float:
        """σ_i of eq. 16 (float64), 0 at η = 0."""
        return self._sigma.get(i, 0.0)

    def needs_noise(self, i: int) -> bool:
        return self.eta > 0 and self.prev(i) > 0

    def prev(self, i: int) -> int:
        if self.spacing == "uniform":
            return max(i - self.stride, 0)
        return self._prev[i]

    def step(self, x: np.ndarray, eps: np.ndarray, i: int, z: np.ndarray | None = None) -> np.ndarray:
        if self.eta == 0:                                 # the course's expression, unchanged
            ab = self.schedule.alphas_cumprod
            ab_t, ab_prev = ab[i], ab[self.prev(i)]
            x0 = (x - np.sqrt(1.0 - ab_t) * eps) * np.float32(np.sqrt(ab_prev) / np.sqrt(ab_t))
            return (x0 + np.sqrt(1.0 - ab_prev) * eps).astype(np.float32, copy=False)
        a, b, sigma = self._coef[i]
        out = x * a
        out += eps * b
        if self.needs_noise(i):
            if z is None:
                raise DdpmEdgeError(f"DDIM step {i} with eta {self.eta} needs noise z")
            out += z * sigma
        return out
