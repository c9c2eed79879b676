"""The embedding API: load a model once, generate sprites many times.

    from ddpm_edge.runtime.api import SpriteGenerator
    gen = SpriteGenerator.load()                      # shipped default, or a path to .onnx / .plan
    sprites = gen.generate(16, context="food", seed=1, sampler="ddim", steps=25)   # uint8 [16,H,W,C]
"""
from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass

import numpy as np

from .contract import ModelSpec
from .engines import load_unet
from .errors import DdpmEdgeError
from .images import to_uint8
from .samplers import make_sampler
from .sampling import Progress, SeededNoise, guided, sample

MAX_SAMPLES = 1 << 20


@dataclass(frozen=True)
class GenerationParams:
    """Everything that determines a generated batch (besides the model itself)."""
    n: int
    sampler: str = "ddpm"
    steps: int | None = None
    seed: int | None = None
    context: str | None = None
    guidance: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def parse_context(spec: ModelSpec, context, n: int, seed: int | None) -> np.ndarray:
    """→ [n, n_cfeat] float32.

    None or "none": zeros (unconditional). A name from the model's metadata ("hero"): that one-hot for
    every sprite. Comma-separated numbers ("1,0,0.6,0,0"): that vector for every sprite. "random": a
    one-hot per sprite, drawn from `seed` (independently of the sampling noise). An array: [n_cfeat]
    or [n, n_cfeat] as given.
    """
    k = spec.n_cfeat
    if context is None or (isinstance(context, str) and context.strip().lower() in ("", "none")):
        return np.zeros((n, k), dtype=np.float32)
    if isinstance(context, str):
        text = context.strip()
        if text.lower() == "random":
            rng = np.random.default_rng(None if seed is None else [seed, 1])
            return np.eye(k, dtype=np.float32)[rng.integers(0, k, size=n)]
        if any(ch.isdigit() for ch in text[:1] + text[-1:]) or text.startswith(("-", ".")):
            try:
                vector = np.array([float(v) for v in text.split(",")], dtype=np.float32)
            except ValueError:
                raise DdpmEdgeError(f"context {text!r} is neither a name nor comma-separated numbers") from None
        else:
            vector = spec.context_vector(text)
        context = vector
    array = np.asarray(context, dtype=np.float32)
    if array.ndim == 1:
        array = np.broadcast_to(array, (n, array.shape[0]))
    if array.shape != (n, k):
        raise DdpmEdgeError(f"context must have {k} values (one per class: {', '.join(spec.context_names)}), "
                            f"got shape {array.shape[1:] if array.ndim == 2 and array.shape[0] == n else array.shape}")
    if not np.all(np.isfinite(array)):
        raise DdpmEdgeError("context values must be finite numbers")
    return np.ascontiguousarray(array)


class SpriteGenerator:
    """Holds one backend (session reused across calls); safe to call from several threads."""

    def __init__(self, unet):
        self.unet = unet
        self.spec: ModelSpec = unet.spec
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str = "auto",
             max_batch: int | None = None) -> "SpriteGenerator":
        return cls(load_unet(path, device=device, max_batch=max_batch))

    @property
    def model_sha256(self) -> str:
        return self.unet.sha256

    def generate_raw(self, n: int, context=None, seed: int | None = None, sampler: str = "ddpm",
                     steps: int | None = None, guidance: float = 0.0, noise=None,
                     progress: Progress | None = None) -> np.ndarray:
        """x_0 as float32 [n, C, H, W], unclipped. `noise` may inject x_T and z (see sampling.py)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SAMPLES:
            raise DdpmEdgeError(f"number of sprites must be an integer from 1 to {MAX_SAMPLES}, got {n!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise DdpmEdgeError(f"seed must be a non-negative integer, got {seed!r}")
        schedule = self.spec.schedule
        step_sampler = make_sampler(sampler, schedule, steps)
        c = parse_context(self.spec, context, n, seed)
        unet = guided(self.unet, float(guidance))
        with self._lock:
            return sample(unet, step_sampler, (n, *self.spec.sample_shape), c,
                          noise=noise if noise is not None else SeededNoise(seed), progress=progress)

    def generate(self, n: int, **kwargs) -> np.ndarray:
        """uint8 sprites [n, H, W, C]; same keywords as `generate_raw`."""
        return to_uint8(self.generate_raw(n, **kwargs))
