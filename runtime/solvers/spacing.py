"""Which schedule indices a solver visits: `steps` integers in 1 … T, descending, the first = T. The step after
the last goes to index 0, where the course sets ᾱ_0 = 1 (σ = 0: the sample is the data prediction).

    uniform  the course's DDIM stride s = T // steps: T, T − s, …, down to the last index above 0
    logsnr   uniform in half log-SNR λ_i = log(√ᾱ_i / √(1 − ᾱ_i)) from λ_T to λ_1 (Lu et al. 2022, §3.3)
    karras   σ_k = (σ_max^(1/ρ) + k/(steps−1) · (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, ρ = 7, σ_i = √((1 − ᾱ_i)/ᾱ_i),
             σ_max = σ_T, σ_min = σ_1 (Karras et al. 2022, arXiv:2206.00364, eq. 5)

logsnr and karras pick continuous positions (interpolating linearly in λ, or in log σ like diffusers'
`_sigma_to_t`) and round them to the nearest index; indices that coincide are kept once, so those
spacings may visit fewer than `steps` indices when steps is close to T.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import DdpmEdgeError
from ..schedule import Schedule, ddim_timesteps

SPACINGS = ("uniform", "logsnr", "karras")
KARRAS_RHO = 7.0


def _check(schedule: Schedule, steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise DdpmEdgeError(f"steps must be a positive integer, got {steps!r}")
    if steps > schedule.T:
        raise DdpmEdgeError(f"steps must be at most T={schedule.T}, got {steps}")


def _to_indices(position: np.ndarray) -> list[int]:
    """Continuous indices (descending) → unique integer indices in 1 … T, descending."""
    rounded = np.rint(position).astype(np.int64)
    return sorted({int(i) for i in rounded}, reverse=True)


def _index_of(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """values [T] over indices 1 … T, strictly monotone; targets → fractional indices by linear interpolation."""
    index = np.arange(1, len(values) + 1, dtype=np.float64)
    if values[0] > values[-1]:                    # np.interp needs ascending abscissae
        values, index = values[::-1], index[::-1]
    return np.interp(targets, values, index)


def uniform(schedule: Schedule, steps: int) -> list[int]:
    return ddim_timesteps(schedule, steps)


def logsnr(schedule: Schedule, steps: int) -> list[int]:
    ab = schedule.alphas_cumprod.astype(np.float64)[1:]                 # [T], indices 1 … T
    lam = 0.5 * (np.log(ab) - np.log1p(-ab))                            # decreasing in i
    return _to_indices(_index_of(lam, np.linspace(lam[-1], lam[0], steps)))


def karras(schedule: Schedule, steps: int, rho: float = KARRAS_RHO) -> list[int]:
    ab = schedule.alphas_cumprod.astype(np.float64)[1:]
    sigma = np.sqrt((1.0 - ab) / ab)                                    # increasing in i
    ramp = np.linspace(0.0, 1.0, steps)
    hi, lo = sigma[-1] ** (1.0 / rho), sigma[0] ** (1.0 / rho)
    targets = (hi + ramp * (lo - hi)) ** rho                            # σ_max … σ_min, eq. 5
    return _to_indices(_index_of(np.log(sigma), np.log(targets)))


@lru_cache(maxsize=256)          # a solver is made per trajectory: compute each spacing once
def _timesteps(schedule: Schedule, steps: int, spacing: str) -> tuple[int, ...]:
    return tuple({"uniform": uniform, "logsnr": logsnr, "karras": karras}[spacing](schedule, steps))


def make_timesteps(schedule: Schedule, steps: int, spacing: str = "uniform") -> list[int]:
    if not isinstance(spacing, str) or spacing.lower() not in SPACINGS:
        raise DdpmEdgeError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    _check(schedule, steps)
    return list(_timesteps(schedule, int(steps), spacing.lower()))
