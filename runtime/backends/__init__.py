"""Pick a backend for a model file: `.onnx` → ONNX Runtime, `.plan`/`.engine` → TensorRT.
With no file, the default model shipped in ddpm_edge.weights."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..errors import DdpmEdgeError

ONNX_SUFFIXES = (".onnx",)
TENSORRT_SUFFIXES = (".plan", ".engine", ".trt")
DEFAULT_MODEL = "unet.onnx"


def default_model_path() -> Path:
    """The shipped ONNX model, from a source checkout or an installed wheel."""
    path = Path(str(resources.files("ddpm_edge.weights").joinpath(DEFAULT_MODEL)))
    if not path.is_file():
        raise DdpmEdgeError("no default model is shipped with this install; pass --engine unet.onnx")
    return path


def load_unet(path: str | os.PathLike | None = None, device: str = "auto", max_batch: int | None = None):
    """A backend callable `eps = unet(x, t, c)` with `.spec`, `.sha256`, `.max_batch`."""
    path = default_model_path() if path is None else Path(path)
    suffix = path.suffix.lower()
    if suffix in TENSORRT_SUFFIXES:
        from .trt import TensorRTUnet
        return TensorRTUnet(path, max_batch=max_batch)
    if suffix in ONNX_SUFFIXES:
        from .ort import OnnxUnet
        return OnnxUnet(path, device=device, max_batch=max_batch)
    raise DdpmEdgeError(f"unknown model type {path.name!r}: expected .onnx, or a TensorRT .plan/.engine")
