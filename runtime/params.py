"""What determines a generated batch besides the model: `GenerationParams`, validated on construction.

`resolved()` fills in what the caller left open (a fresh random seed, the sampler's default steps) so
that the parameters recorded with an output reproduce it exactly.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .assets.records import V1_DEFAULTS
from .assets.background import (DEFAULT_KEYING, DEFAULT_TOLERANCE, check_keying, check_tolerance,
                                parse_background)
from .errors import DdpmEdgeError
from .limits import MAX_GUIDANCE, MAX_N, MAX_SEED, MAX_T
from .solvers import COURSE_SAMPLERS, DEFAULT_CLASS_GUIDANCE, DEFAULT_SAMPLER, check_eta, check_sampler, check_spacing, default_steps
from .sampling import DEFAULT_RNG, RNGS

MAX_SAMPLES = MAX_N
SEED_BITS = 32


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def check_context_list(context) -> None:
    """A context given as a list: finite numbers [n_cfeat], or rows of them [n, n_cfeat] of one length."""
    rows = context if context and all(isinstance(row, (list, tuple)) for row in context) else [context]
    width = len(rows[0])
    for row in rows:
        if len(row) != width or not all(_is_number(v) for v in row):
            raise DdpmEdgeError("context must be a list of finite numbers, or equal-length rows of them, "
                                f"got {str(context)[:80]}")


def check_guidance(guidance) -> float:
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float, np.integer, np.floating)) \
            or not math.isfinite(guidance) or guidance < 0 or guidance > MAX_GUIDANCE:
        raise DdpmEdgeError(f"guidance must be a finite number from 0 to {MAX_GUIDANCE:g}, got {guidance!r}")
    return float(guidance)


def default_guidance(sampler: str, context) -> float:
    """The guidance w when none is given: DEFAULT_CLASS_GUIDANCE when a class is asked for and the solver
    is not one of the course's (ddpm, ddim keep the course's w = 0); 0 for an unconditional run (no
    context, "none", or an all-zero vector)."""
    if str(sampler).lower() in COURSE_SAMPLERS or context is None:
        return 0.0
    if isinstance(context, str):
        return 0.0 if context.strip().lower() in ("", "none") else DEFAULT_CLASS_GUIDANCE
    return DEFAULT_CLASS_GUIDANCE if np.any(np.asarray(context, dtype=np.float32)) else 0.0


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class GenerationParams:
    """n sprites from `sampler` (`steps`, `spacing`; `eta` for ddim), noise from `seed`, conditioned on `context` (a name,
    "random", "none", comma-separated numbers, or a list), classifier-free `guidance`; then the
    background kept (None), keyed to "transparent", or replaced by a colour ("#rrggbb"), keying pixels
    within `tolerance` (0–255, per channel) of the colour estimated from the sprite's border."""
    n: int = 16
    sampler: str = DEFAULT_SAMPLER
    steps: int | None = None
    seed: int | None = None
    context: str | list | None = None
    guidance: float | None = None   # None: default_guidance(sampler, context), made concrete by resolved()
    background: str | None = None
    tolerance: int = DEFAULT_TOLERANCE
    eta: float = 0.0                # DDIM's η (0: the course's deterministic DDIM); other samplers refuse η > 0
    spacing: str = "uniform"        # which indices the sampler visits: uniform, logsnr, karras
    rng: str = DEFAULT_RNG          # noise generator: pcg64 (records without the field) or philox
    keying: str = DEFAULT_KEYING    # background keying algorithm: v2 (edges unmixed), v1 (records without the field)

    def __post_init__(self):
        if not _is_int(self.n) or not 1 <= self.n <= MAX_SAMPLES:
            raise DdpmEdgeError(f"number of sprites must be an integer, at least 1 and at most {MAX_SAMPLES}, "
                                f"got {self.n!r}")
        sampler = check_sampler(self.sampler)
        object.__setattr__(self, "eta", check_eta(sampler, self.eta))
        object.__setattr__(self, "spacing", check_spacing(sampler, self.spacing))
        if self.steps is not None and (not _is_int(self.steps) or not 1 <= self.steps <= MAX_T):
            raise DdpmEdgeError(f"steps must be an integer from 1 to {MAX_T}, got {self.steps!r}")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            raise DdpmEdgeError(f"seed must be an integer from 0 to 2**64 - 1, got {self.seed!r}")
        if not isinstance(self.rng, str) or self.rng.lower() not in RNGS:
            raise DdpmEdgeError(f"unknown noise generator {self.rng!r}; choose one of {', '.join(RNGS)}")
        object.__setattr__(self, "rng", self.rng.lower())
        if isinstance(self.context, np.ndarray):
            object.__setattr__(self, "context", self.context.tolist())
        if self.context is not None and not isinstance(self.context, (str, list, tuple)):
            raise DdpmEdgeError(f"context must be a string or a list of numbers, got {type(self.context).__name__}")
        if isinstance(self.context, (list, tuple)):
            check_context_list(self.context)
        if self.guidance is not None:
            check_guidance(self.guidance)
        for name, value in (("sampler", self.sampler.lower()),
                            ("guidance", None if self.guidance is None else float(self.guidance)),
                            ("background", parse_background(self.background)),
                            ("tolerance", check_tolerance(self.tolerance)), ("keying", check_keying(self.keying)),
                            ("context", list(self.context) if isinstance(self.context, tuple) else self.context)):
            object.__setattr__(self, name, value)
        for name in ("n", "steps", "seed"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))

    def resolved(self, T: int) -> "GenerationParams":
        """A copy with every open choice made: a random seed when none was given, the default steps and
        guidance."""
        seed = self.seed if self.seed is not None else secrets.randbits(SEED_BITS)
        steps = self.steps if self.steps is not None else default_steps(self.sampler, T)
        guidance = self.guidance if self.guidance is not None else default_guidance(self.sampler, self.context)
        return replace(self, seed=seed, steps=steps, guidance=guidance)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict, source: str = "the record") -> "GenerationParams":
        """The parameters stored in a PNG record (pngmeta.read_record)."""
        names = [f.name for f in fields(cls)]
        record = {**{k: v for k, v in V1_DEFAULTS.items() if k in names}, **record}   # fields /1 lacked
        missing = [name for name in names if name not in record]
        if missing:
            raise DdpmEdgeError(f"{source} lacks generation parameters: {', '.join(missing)}")
        return cls(**{name: record[name] for name in names})
