"""Loading the model a service or batch worker owns (no web or Ray imports here)."""
from __future__ import annotations


def load_generator(engine: str | None = None, device: str = "auto", threads: int | None = None):
    """A SpriteGenerator on `engine` (default: the shipped model). `threads` caps ONNX Runtime's intra-op
    threads of an .onnx model: processes sharing a machine (replicas, batch workers, a busy host) lose
    more to spinning thread pools than a single-row UNet call gains from a second thread."""
    from ddpm_edge.runtime.api import SpriteGenerator
    if threads is None or (engine is not None and not str(engine).lower().endswith(".onnx")):
        return SpriteGenerator.load(engine, device=device)
    from ddpm_edge.runtime.backends import default_model_path
    from ddpm_edge.runtime.backends.ort import OnnxUnet
    from ddpm_edge.runtime.errors import DdpmEdgeError
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise DdpmEdgeError(f"threads must be a positive integer, got {threads!r}")
    return SpriteGenerator(OnnxUnet(engine or default_model_path(), device=device, threads=threads))
