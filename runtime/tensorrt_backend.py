"""TensorRT backend (placeholder until the GPU issue lands): refuses with a reason."""
from __future__ import annotations

from .errors import MissingDependency


class TensorRTUnet:
    def __init__(self, path, max_batch=None):
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            raise MissingDependency(f"{path}: TensorRT engines need the tensorrt package and an NVIDIA GPU; "
                                    "tensorrt is not installed (use the .onnx model instead)") from None
        raise MissingDependency(f"{path}: the TensorRT backend is not available in this build")
