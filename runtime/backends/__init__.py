"""Pick a backend for a model file: `.onnx` → ONNX Runtime (or OpenVINO when asked), `.xml` → OpenVINO
IR, `.plan`/`.engine` → TensorRT. With no file, the default model shipped in ddpm_edge.weights.

Every backend object has `.backend`, `.precision`, `.spec`, `.sha256`, `.path`, `.max_batch` and
`__call__(x, t, c) -> eps` (float32). The precision is never changed behind the caller's back: a
backend runs what the file holds (ONNX Runtime, TensorRT) or exactly the precision asked (OpenVINO).
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..errors import DdpmEdgeError
from .common import BACKENDS, PRECISIONS, check_choice

ONNX_SUFFIXES = (".onnx",)
TENSORRT_SUFFIXES = (".plan", ".engine", ".trt")
OPENVINO_SUFFIXES = (".xml",)
DEFAULT_MODEL = "unet.onnx"


def default_model_path() -> Path:
    """The shipped ONNX model, from a source checkout or an installed wheel."""
    path = Path(str(resources.files("ddpm_edge.weights").joinpath(DEFAULT_MODEL)))
    if not path.is_file():
        raise DdpmEdgeError("no default model is shipped with this install; pass --engine unet.onnx")
    return path


def pick_backend(path: Path, backend: str = "auto", precision: str | None = None) -> str:
    """auto: by file type (.plan → tensorrt, .xml → openvino, .onnx → onnxruntime, or openvino for bf16,
    which only OpenVINO runs). An explicit backend must be able to read the file."""
    check_choice("backend", backend, BACKENDS)
    check_choice("precision", precision, PRECISIONS)
    suffix = path.suffix.lower()
    kind = ("tensorrt" if suffix in TENSORRT_SUFFIXES else "openvino" if suffix in OPENVINO_SUFFIXES
            else "onnx" if suffix in ONNX_SUFFIXES else None)
    if kind is None:
        raise DdpmEdgeError(f"unknown model type {path.name!r}: expected .onnx, an OpenVINO .xml, "
                            "or a TensorRT .plan/.engine")
    if backend == "auto":
        return ("onnxruntime" if precision != "bf16" else "openvino") if kind == "onnx" else kind
    readable = {"onnxruntime": ("onnx",), "openvino": ("onnx", "openvino"), "tensorrt": ("tensorrt",)}[backend]
    if kind not in readable:
        need = {"onnxruntime": "a .onnx model", "openvino": "a .onnx or OpenVINO .xml model",
                "tensorrt": "a .plan engine (ddpm-export --onnx unet.onnx --trt unet.plan)"}[backend]
        raise DdpmEdgeError(f"--backend {backend} needs {need}, not {path.name}")
    return backend


def load_unet(path: str | os.PathLike | None = None, device: str = "auto", max_batch: int | None = None,
              backend: str = "auto", precision: str | None = None):
    """A backend callable `eps = unet(x, t, c)` (see the module doc). `precision` None: what the file holds
    (fp32 for a float ONNX on OpenVINO, never its silent bf16)."""
    path = default_model_path() if path is None else Path(path)
    chosen = pick_backend(path, backend, precision)
    if chosen == "tensorrt":
        from .trt import TensorRTUnet
        unet = TensorRTUnet(path, max_batch=max_batch)
        if precision is not None and precision != unet.precision:
            raise DdpmEdgeError(f"{path.name} is a {unet.precision} TensorRT engine, not {precision}; "
                                "the precision of an engine is fixed when it is built")
        return unet
    if chosen == "openvino":
        from .ov import OpenVinoUnet
        return OpenVinoUnet(path, device=device, max_batch=max_batch, precision=precision)
    from .ort import OnnxUnet
    return OnnxUnet(path, device=device, max_batch=max_batch, precision=precision)
