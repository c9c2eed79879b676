"""The DDPM noise schedule of the course, computed once, in NumPy.

    betas[i]          = linspace(beta1, beta2, T + 1)[i]          i = 0 … T
    alphas[i]         = 1 − betas[i]
    alphas_cumprod[i] = ∏_{k ≤ i} alphas[k], with alphas_cumprod[0] = 1

The arithmetic is done in float64 and stored as float32 (what the model and the steps consume).
The torch reference and the exporter import this module; nothing here imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import DdpmEdgeError
from .limits import MAX_T

COURSE_T = 500
COURSE_BETA1 = 1e-4
COURSE_BETA2 = 0.02


@dataclass(frozen=True)
class Schedule:
    T: int = COURSE_T
    beta1: float = COURSE_BETA1
    beta2: float = COURSE_BETA2
    betas: np.ndarray = field(init=False, repr=False, compare=False)           # [T+1]
    alphas: np.ndarray = field(init=False, repr=False, compare=False)          # [T+1]
    alphas_cumprod: np.ndarray = field(init=False, repr=False, compare=False)  # [T+1]

    def __post_init__(self):
        if not (isinstance(self.T, (int, np.integer)) and not isinstance(self.T, bool) and 1 <= self.T <= MAX_T):
            raise DdpmEdgeError(f"schedule T must be an integer from 1 to {MAX_T}, got {self.T!r}")
        if not all(isinstance(b, (int, float, np.integer, np.floating)) and not isinstance(b, bool)
                   for b in (self.beta1, self.beta2)):
            raise DdpmEdgeError(f"schedule betas must be numbers, got {self.beta1!r}, {self.beta2!r}")
        if not (0.0 < self.beta1 <= self.beta2 < 1.0):
            raise DdpmEdgeError(f"schedule needs 0 < beta1 <= beta2 < 1, got {self.beta1}, {self.beta2}")
        betas = np.linspace(self.beta1, self.beta2, self.T + 1, dtype=np.float64)
        alphas = 1.0 - betas
        alphas_cumprod = np.cumprod(alphas)
        alphas_cumprod[0] = 1.0
        ab32 = alphas_cumprod.astype(np.float32)
        with np.errstate(all="ignore"):   # the steps divide by √ᾱ_i and √(1 − ᾱ_i) in float32
            usable = (ab32 > 0).all() and (1 - ab32[1:] > 0).all() and np.isfinite(1 / np.sqrt(ab32)).all()
        if not usable:
            raise DdpmEdgeError(f"schedule T={self.T}, beta1={self.beta1}, beta2={self.beta2} underflows in float32 "
                                "(alphas_cumprod reaches 0 or 1 − alphas_cumprod is 0): its steps would divide by zero")
        for name, value in (("betas", betas), ("alphas", alphas), ("alphas_cumprod", alphas_cumprod)):
            value = value.astype(np.float32)
            value.flags.writeable = False
            object.__setattr__(self, name, value)

    def t_input(self, i: int) -> float:
        """The UNet's time input for step index i: t = i / T."""
        return i / self.T

    def as_dict(self) -> dict:
        return {"T": int(self.T), "beta1": float(self.beta1), "beta2": float(self.beta2)}


def ddpm_timesteps(schedule: Schedule) -> list[int]:
    """DDPM visits every index: T, T−1, …, 1."""
    return list(range(schedule.T, 0, -1))


def ddim_timesteps(schedule: Schedule, steps: int) -> list[int]:
    """Course lesson 4: stride s = T // steps, indices T, T−s, …, down to the last one above 0."""
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise DdpmEdgeError(f"steps must be a positive integer, got {steps!r}")
    if steps > schedule.T:
        raise DdpmEdgeError(f"steps must be at most T={schedule.T}, got {steps}")
    stride = schedule.T // steps
    return list(range(schedule.T, 0, -stride))
