"""Loading the model a service or batch worker owns (no web or Ray imports here)."""
from __future__ import annotations


def load_generator(engine: str | None = None, device: str = "auto", threads: int | None = None,
                   backend: str = "auto", precision: str | None = None):
    """A SpriteGenerator on `engine` (default: the shipped model) with `backend` and `precision` as
    `ddpm-run --backend/--precision`. `threads` caps the intra-op threads of ONNX Runtime or OpenVINO:
    processes sharing a machine (replicas, batch workers, a busy host) lose more to spinning thread
    pools than a UNet call gains from a second thread."""
    from pathlib import Path

    from ddpm_edge.runtime.api import SpriteGenerator
    from ddpm_edge.runtime.backends import default_model_path, pick_backend
    from ddpm_edge.runtime.errors import DdpmEdgeError
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise DdpmEdgeError(f"threads must be a positive integer, got {threads!r}")
    path = Path(engine) if engine is not None else default_model_path()
    chosen = pick_backend(path, backend, precision)
    if threads is not None and chosen in ("onnxruntime", "openvino"):
        if not path.is_file():
            raise DdpmEdgeError(f"model file not found: {path}")
        if chosen == "onnxruntime":
            from ddpm_edge.runtime.backends.ort import OnnxUnet
            return SpriteGenerator(OnnxUnet(path, device=device, threads=threads, precision=precision))
        from ddpm_edge.runtime.backends.ov import OpenVinoUnet
        return SpriteGenerator(OpenVinoUnet(path, device=device, precision=precision, threads=threads))
    return SpriteGenerator.load(engine, device=device, backend=backend, precision=precision)
