"""ddpm-edge runtime: torch-free sampling of the course's ContextUnet through ONNX Runtime or TensorRT."""
from .errors import DdpmEdgeError
from .schedule import Schedule
from .solvers import DDIMSampler, DDPMSampler, make_sampler
from .sampling import InjectedNoise, SeededNoise, guided, sample

try:
    from importlib.metadata import PackageNotFoundError, version as _version
    __version__ = _version("ddpm-edge")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0.0.0+unknown"

__all__ = ["DdpmEdgeError", "Schedule", "DDPMSampler", "DDIMSampler", "make_sampler", "InjectedNoise",
           "SeededNoise", "guided", "sample", "__version__"]
