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


RNGS = ("pcg64", "philox")
DEFAULT_RNG = "philox"   # new records: the portable generator (runtime/rng.py), the same noise in the browser


def make_noise(rng: str, seed: int | None):
    """The loop's noise source by record name: "pcg64" (SeededNoise, NumPy's default_rng, the stream of
    every record without an "rng" field) or "philox" (runtime/rng.py, the same noise in the browser)."""
    if rng == "pcg64":
        return SeededNoise(seed)
    if rng == "philox":
        from .rng import PhiloxNoise
        return PhiloxNoise(seed)
    raise DdpmEdgeError(f"unknown noise generator {rng!r}; choose one of {', '.join(RNGS)}")


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


class Trajectory:
    """One reverse process x_T → x_0 advanced a timestep at a time by whoever calls the UNet: `sample()`
    below, or the continuous batcher (runtime/batching.py), which puts the rows of many trajectories
    into one call. Per step: `inputs()` → (x, t, c), the rows to evaluate ([2N] with guidance: c then
    the unconditional zeros), then `advance(eps)` with the UNet's output for exactly those rows.

    Noise comes from `noise` in loop order (x_T on construction, then z for each step that needs it),
    so a trajectory gives the same x_0 whichever rows it shares a UNet call with.
    """

    def __init__(self, sampler, shape: tuple[int, int, int, int], context: np.ndarray, noise=None,
                 guidance: float = 0.0):
        self.noise = noise if noise is not None else SeededNoise(None)
        self.sampler, self.shape = sampler, tuple(shape)
        n = self.shape[0]
        context = np.ascontiguousarray(context, dtype=np.float32)               # [N, n_cfeat]
        if context.shape[0] != n:
            raise DdpmEdgeError(f"context has {context.shape[0]} rows for {n} samples")
        self.weight = _guidance_weight(guidance)
        # guided: rows [0, N) conditioned on c, rows [N, 2N) on zeros (unconditional)
        self.c = context if self.weight is None else np.concatenate([context, np.zeros_like(context)])
        self.timesteps = list(sampler.timesteps)
        self.k = 0                                                               # steps done
        self.x = self.noise.initial(self.shape)                                  # x_T [N,C,H,W]
        self._t = np.empty((self.c.shape[0], 1), dtype=np.float32)

    @property
    def rows(self) -> int:
        """UNet rows per step: N, or 2N with guidance."""
        return self.c.shape[0]

    @property
    def total(self) -> int:
        return len(self.timesteps)

    @property
    def done(self) -> bool:
        return self.k >= len(self.timesteps)

    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x [R,C,H,W], t [R,1], c [R,n_cfeat]) of the current step, R = rows."""
        self._t.fill(self.sampler.schedule.t_input(self.timesteps[self.k]))
        x = self.x if self.weight is None else np.concatenate([self.x, self.x])
        return x, self._t, self.c

    def advance(self, eps: np.ndarray) -> np.ndarray:
        """Apply this step's rule to the UNet's eps [R,C,H,W] for `inputs()`; returns the new x."""
        i = self.timesteps[self.k]
        z = self.noise.step(self.k, self.shape) if self.sampler.needs_noise(i) else None
        if self.weight is not None:
            eps = mix_guidance(eps, self.weight)
        self.x = self.sampler.step(self.x, eps, i, z)
        self.k += 1
        return self.x


def sample(
    unet: Unet,
    sampler,
    shape: tuple[int, int, int, int],  # (N, C, H, W)
    context: np.ndarray,                # [N, n_cfeat]
    noise=None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Run the reverse process from x_T to x_0 and return x_0, [N,C,H,W] float32, unclipped."""
    trajectory = Trajectory(sampler, shape, context, noise)
    while not trajectory.done:
        x = trajectory.advance(unet(*trajectory.inputs()))
        if progress is not None and progress(trajectory.k, trajectory.total, x) is False:
            raise Cancelled("sampling cancelled")
    return trajectory.x


def _guidance_weight(weight: float) -> np.float32 | None:
    """The guidance weight w as float32, None for w = 0 (no guidance rows)."""
    if not np.isfinite(weight) or weight < 0 or weight > MAX_GUIDANCE:   # w is applied in float32
        raise DdpmEdgeError(f"guidance must be a finite number from 0 to {MAX_GUIDANCE:g}, got {weight}")
    return None if weight == 0 else np.float32(weight)


def mix_guidance(eps: np.ndarray, w: np.float32) -> np.ndarray:
    """eps [2N,...] of (c rows, zero rows) → (1 + w) · eps(c) − w · eps(0), [N,...]."""
    n = eps.shape[0] // 2
    return (1 + w) * eps[:n] - w * eps[n:]


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
    w = _guidance_weight(weight)
    if w is None:
        return unet

    def guided_unet(x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        eps = unet(np.concatenate([x, x]), np.concatenate([t, t]), np.concatenate([c, np.zeros_like(c)]))
        return mix_guidance(eps, w)

    guided_unet.max_batch = getattr(unet, "max_batch", None)
    return guided_unet
