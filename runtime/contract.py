"""The UNet's I/O contract, in one place. Export names and shapes its graph from it, the TensorRT
builder derives its optimization profile from it, and every backend checks inputs against it.

    x   [N, C, H, W]   float32   noisy sample x_i
    t   [N, 1]         float32   i / T
    c   [N, n_cfeat]   float32   context (zeros = unconditional)
    eps [N, C, H, W]   float32   predicted noise

N is the one dynamic axis ("batch"). A model describes itself through string metadata
(`ModelSpec.to_metadata`), which ONNX `metadata_props` and the TensorRT sidecar both carry.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .errors import DdpmEdgeError
from .limits import (MAX_CALL_ROWS, MAX_CFEAT, MAX_FIXED_BATCH, MAX_CHANNELS, MAX_METADATA_BYTES, MAX_SIDE, MAX_T, check_limit,
                     json_depth_ok)
from .schedule import COURSE_BETA1, COURSE_BETA2, COURSE_T, Schedule

INPUT_NAMES = ("x", "t", "c")
OUTPUT_NAMES = ("eps",)
BATCH_AXIS = "batch"
FORMAT = "ddpm-edge/1"
COURSE_CONTEXT_NAMES = ("hero", "non-hero", "food", "spell", "side-facing")


@dataclass(frozen=True)
class ModelSpec:
    channels: int = 3
    height: int = 16
    width: int = 16
    n_cfeat: int = 5
    T: int = COURSE_T
    beta1: float = COURSE_BETA1
    beta2: float = COURSE_BETA2
    context_names: tuple[str, ...] = COURSE_CONTEXT_NAMES
    shortcut: str = "unknown"   # how init_conv's shortcut was fixed: seed:N, zero, learned
    precision: str = "fp32"     # weights/activations of the graph: fp32 or fp16 (I/O stays float32)
    source_sha256: str = ""     # the checkpoint the graph was exported from
    version: str = ""           # ddpm-edge version that wrote it
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.T, self.beta1, self.beta2)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def shapes(self, n: int | str = BATCH_AXIS) -> dict[str, tuple]:
        """Every tensor's shape for batch n (n may be the symbolic axis name)."""
        image = (n, self.channels, self.height, self.width)
        return {"x": image, "t": (n, 1), "c": (n, self.n_cfeat), "eps": image}

    def profile(self, min_batch: int, opt_batch: int, max_batch: int) -> dict[str, tuple[tuple, tuple, tuple]]:
        """(min, opt, max) shapes of each input, for a TensorRT optimization profile."""
        if not 1 <= min_batch <= opt_batch <= max_batch:
            raise DdpmEdgeError(f"batch profile needs 1 <= min <= opt <= max, got {min_batch}:{opt_batch}:{max_batch}")
        return {name: (self.shapes(min_batch)[name], self.shapes(opt_batch)[name], self.shapes(max_batch)[name])
                for name in INPUT_NAMES}

    def check_inputs(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> None:
        n = x.shape[0] if x.ndim else 0
        for name, array in (("x", x), ("t", t), ("c", c)):
            if array.dtype != np.float32:
                raise DdpmEdgeError(f"input {name} must be float32, got {array.dtype}")
            if tuple(array.shape) != self.shapes(n)[name]:
                raise DdpmEdgeError(f"input {name} has shape {tuple(array.shape)}, expected {self.shapes(n)[name]}")

    def context_vector(self, name: str) -> np.ndarray:
        """One-hot [n_cfeat] for a context name from the metadata."""
        names = [n.lower() for n in self.context_names]
        if name.lower() not in names:
            raise DdpmEdgeError(f"unknown context {name!r}; this model knows: {', '.join(self.context_names)}")
        vector = np.zeros(self.n_cfeat, dtype=np.float32)
        vector[names.index(name.lower())] = 1.0
        return vector

    def to_metadata(self) -> dict[str, str]:
        meta = {"format": FORMAT}
        for key, value in asdict(self).items():
            if key == "extra":
                meta.update({k: str(v) for k, v in value.items()})
            elif key == "context_names":
                meta[key] = json.dumps(list(value))
            else:
                meta[key] = str(value)
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str], **fallback) -> "ModelSpec":
        """Read what `to_metadata` wrote; missing keys fall back to `fallback`, then course defaults."""
        kwargs = dict(fallback)
        size = sum(len(str(k)) + len(str(v)) for k, v in meta.items())
        check_limit("model metadata size (bytes)", size, MAX_METADATA_BYTES)
        if "context_names" in meta and not json_depth_ok(meta["context_names"], 2):
            raise DdpmEdgeError("model metadata is malformed: context_names is nested too deeply")
        try:
            for key, kind in (("channels", int), ("height", int), ("width", int), ("n_cfeat", int), ("T", int),
                              ("beta1", float), ("beta2", float), ("shortcut", str), ("precision", str),
                              ("source_sha256", str), ("version", str)):
                if key in meta:
                    kwargs[key] = kind(meta[key])
            if "context_names" in meta:
                names = json.loads(meta["context_names"])
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise ValueError("context_names must be a JSON list of strings")
                kwargs["context_names"] = tuple(names)
        except (ValueError, TypeError, OverflowError) as e:
            raise DdpmEdgeError(f"model metadata is malformed: {str(e)[:200]}") from None
        for key, low, high in (("channels", 1, MAX_CHANNELS), ("height", 2, MAX_SIDE), ("width", 2, MAX_SIDE),
                               ("n_cfeat", 1, MAX_CFEAT), ("T", 1, MAX_T)):
            value = kwargs.get(key, getattr(cls, key))
            if not low <= value <= high:
                raise DdpmEdgeError(f"model metadata is malformed: {key} must be from {low} to {high}, got {value}")
        if kwargs.get("channels", cls.channels) == 2:
            raise DdpmEdgeError("model metadata is malformed: images have 1, 3 or 4 channels, got 2")
        known = set(cls.__dataclass_fields__) | {"format"}
        kwargs["extra"] = {k: v for k, v in meta.items() if k not in known}
        spec = cls(**kwargs)
        n_cfeat = spec.n_cfeat
        if len(spec.context_names) != n_cfeat:
            # a model without names (or with the wrong count) gets positional names
            names = spec.context_names if len(spec.context_names) == n_cfeat else tuple(f"class{k}" for k in range(n_cfeat))
            spec = replace(spec, context_names=names)
        spec.schedule  # validates T and betas
        return spec


def run_chunked(spec: ModelSpec, run, x: np.ndarray, t: np.ndarray, c: np.ndarray,
                max_batch: int | None = None, min_batch: int = 1) -> np.ndarray:
    """eps [N,C,H,W] for all N rows of (x, t, c), checked against `spec`, through `run(x, t, c)` called on
    chunks of at most `max_batch` rows; a chunk shorter than `min_batch` (a fixed graph batch, a TensorRT
    profile's min) is padded with its last row and the padding dropped. Rows never mix, so the result
    does not depend on the split."""
    x, t, c = (np.ascontiguousarray(a, dtype=np.float32) for a in (x, t, c))
    spec.check_inputs(x, t, c)
    check_limit("the model's fixed/minimum batch", min_batch, MAX_FIXED_BATCH)
    n = x.shape[0]
    step = max_batch or min(n, max(MAX_CALL_ROWS, min_batch))   # bounded rows per call bound activation memory
    out = []
    for k in range(0, n, step):
        chunk = [a[k:k + step] for a in (x, t, c)]
        rows = chunk[0].shape[0]
        if rows < min_batch:
            chunk = [np.ascontiguousarray(np.concatenate([a, np.repeat(a[-1:], min_batch - rows, axis=0)]))
                     for a in chunk]
        eps = run(*chunk)
        if not isinstance(eps, np.ndarray) or eps.dtype != np.float32 or eps.shape != chunk[0].shape:
            raise DdpmEdgeError(f"the model broke its I/O contract: eps must be float32 {chunk[0].shape}, got "
                                f"{getattr(eps, 'dtype', type(eps).__name__)} {getattr(eps, 'shape', '')}")
        out.append(eps[:rows])
    return out[0] if len(out) == 1 else np.concatenate(out)
