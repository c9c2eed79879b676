"""The sampling loop: one backend call `eps = unet(x, t, c)` per timestep, the step in NumPy.

Noise is drawn from a seeded NumPy generator in a fixed order (x_T first, then z for each step that
needs it), or injected through `InjectedNoise` so another implementation can be fed the same draws.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from .errors import Cancelled, DdpmEdgeError, ValidationFailed
from .limits import MAX_GUIDANCE


class Unet(Protocol):
    def __call__(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray: ...


class SeededNoise:
    """x_T and every z come from one `np.random.default_rng(seed)` stream, in loop order."""

    def __init__(self, seed: int | None):
        self.rng = np.random.default_rng(seed)

    def initial(self, shape: tuple) -> np.ndarray:
        return self.rng.standard_normal(shape, dtype=np.float32)

    def step(self, k: int, shape: tuple) -> np.ndarray:
        return self.rng.standard_normal(shape, dtype=np.float32)


class InjectedNoise:
    """Fixed draws: `x_T` [N,C,H,W] and `z` [K,N,C,H,W], z[k] used at the k-th timestep."""

    def __init__(self, x_T: np.ndarray, z: np.ndarray | None = None):
        self.x_T = np.asarray(x_T, dtype=np.float32)
        self.z = None if z is None else np.asarray(z, dtype=np.float32)

    def initial(self, shape: tuple) -> np.ndarray:
        if self.x_T.shape != tuple(shape):
            raise DdpmEdgeError(f"injected x_T has shape {self.x_T.shape}, expected {tuple(shape)}")
        return self.x_T.copy()

    def step(self, k: int, shape: tuple) -> np.ndarray:
        if self.z is None or k >= len(self.z):
            raise DdpmEdgeError(f"injected noise has no z for timestep number {k}")
        return self.z[k]


# progress(done, total, x) -> False to cancel; x is the current [N,C,H,W] sample.
Progress = Callable[[int, int, np.ndarray], "bool | None"]


def sample(
    unet: Unet,
    sampler,
    shape: tuple[int, int, int, int],  # (N, C, H, W)
    context: np.ndarray,                # [N, n_cfeat]
    noise=None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Run the reverse process from x_T to x_0 and return x_0, [N,C,H,W] float32, unclipped."""
    noise = noise if noise is not None else SeededNoise(None)
    n = shape[0]
    context = np.ascontiguousarray(context, dtype=np.float32)
    if context.shape[0] != n:
        raise DdpmEdgeError(f"context has {context.shape[0]} rows for {n} samples")
    x = noise.initial(shape)
    total = len(sampler.timesteps)
    t = np.empty((n, 1), dtype=np.float32)
    for k, i in enumerate(sampler.timesteps):
        z = noise.step(k, shape) if sampler.needs_noise(i) else None
        t.fill(sampler.schedule.t_input(i))
        eps = unet(x, t, context)
        x = sampler.step(x, eps, i, z)
        if progress is not None and progress(k + 1, total, x) is False:
            raise Cancelled("sampling cancelled")
    return x


def check_finite(x: np.ndarray) -> np.ndarray:
    """x_0 must be finite: a NaN/inf sample (NaN weights, an overflowing model) is an error, never an image.
    Checked once on the result, not per step: non-finite values propagate to x_0."""
    if not np.isfinite(x).all():
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise ValidationFailed(f"the model produced non-finite samples ({bad:,} of {x.size:,} values are NaN or "
                               "infinite); nothing was written")
    return x


def guided(unet: Unet, weight: float) -> Unet:
    """Classifier-free guidance as a backend wrapper:

        eps = (1 + w) · eps(x, t, c) − w · eps(x, t, 0)

    computed in one batched call of 2N rows. w = 0 returns `unet` unchanged.
    """
    if not np.isfinite(weight) or weight < 0 or weight > MAX_GUIDANCE:   # w is applied in float32
        raise DdpmEdgeError(f"guidance must be a finite number from 0 to {MAX_GUIDANCE:g}, got {weight}")
    if weight == 0:
        return unet
    w = np.float32(weight)

    def guided_unet(x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        eps = unet(np.concatenate([x, x]), np.concatenate([t, t]), np.concatenate([c, np.zeros_like(c)]))
        return (1 + w) * eps[:n] - w * eps[n:]

    guided_unet.max_batch = getattr(unet, "max_batch", None)
    return guided_unet
