"""TensorRT backend: `eps = TensorRTUnet("unet.plan")(x, t, c)`, without torch.

A plan file holds no metadata, so `ddpm-export --trt` writes a sidecar `unet.plan.json` beside it:

    format               ddpm-edge-trt/1
    model                ModelSpec.to_metadata(): schedule, shapes, context names, precision, …
    batch_profile        {"min", "opt", "max"}: the one optimization profile over the batch axis
    precision            fp32 | fp16
    tensorrt_version     the TensorRT that built the plan
    gpu                  {"name", "compute_capability"} of the GPU it was built on
    source_onnx_sha256   the ONNX it was built from
    plan_sha256          the plan itself

At load the sidecar is checked: the plan's hash, the installed TensorRT version and this GPU must match
(a plan is only valid for the TensorRT build and GPU that made it), and the engine's tensors must be
the contract's (x, t, c → eps, float32, batch profile as recorded). Anything else is refused with a
one-line reason.

Running: one execution context; per call `set_input_shape` for the batch, inputs copied into device
buffers allocated through CUDA Python (`cuda.bindings` runtime API), `set_tensor_address` per tensor,
`execute_async_v3` on our stream, eps copied back. Batches above the profile's max are split; a chunk
below its min is padded with copies of its last row.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..contract import INPUT_NAMES, OUTPUT_NAMES, ModelSpec, run_chunked
from ..errors import DdpmEdgeError, MissingDependency
from ..files import sha256_file

SIDECAR_FORMAT = "ddpm-edge-trt/1"
TENSOR_NAMES = (*INPUT_NAMES, *OUTPUT_NAMES)


def import_tensorrt(what: str = "TensorRT engines"):
    try:
        import tensorrt
    except ImportError:
        raise MissingDependency(f"{what}: the tensorrt package and an NVIDIA GPU are needed; tensorrt is not installed "
                                "(pip install 'ddpm-edge[trt]' on a CUDA machine, or use the .onnx model)") from None
    major = trt_major(tensorrt.__version__)
    if major < 10:
        raise MissingDependency(f"{what}: TensorRT 10 or newer is needed; this is TensorRT {tensorrt.__version__}")
    return tensorrt


def import_cudart():
    """The CUDA runtime API of CUDA Python: `cuda.bindings.runtime` (cuda-python >= 12.6) or `cuda.cudart`."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise MissingDependency("TensorRT engines need CUDA Python for device buffers: pip install cuda-python") from None
    return cudart


def native_handle(obj) -> int:
    """The integer handle of a CUDA Python object (our stream) for TensorRT: `get_cuda_native_handle`
    from cuda.bindings.utils where it exists (`int(obj)` is deprecated since cuda-bindings 13.0), else int."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    return int(get_cuda_native_handle(obj))


def trt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise DdpmEdgeError(f"cannot read the TensorRT version {version!r}") from None


def cuda_call(cudart, result, what: str):
    """CUDA Python returns (error, *values): raise on error, return the values (one value unwrapped)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise DdpmEdgeError(f"CUDA {what} failed: {getattr(err, 'name', err)}")
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(cudart) -> dict:
    """{"name", "compute_capability"} of the current CUDA device; MissingDependency without one."""
    count = cudart.cudaGetDeviceCount()
    if count[0] != cudart.cudaError_t.cudaSuccess or count[1] < 1:
        raise MissingDependency("TensorRT engines need an NVIDIA GPU; CUDA found none")
    device = cuda_call(cudart, cudart.cudaGetDevice(), "cudaGetDevice")
    prop = cuda_call(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return {"name": name.strip(), "compute_capability": f"{prop.major}.{prop.minor}"}


def sidecar_path(plan: str | os.PathLike) -> Path:
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


def make_sidecar(spec: ModelSpec, batch: tuple[int, int, int], precision: str, trt_version: str, gpu: dict,
                 source_sha256: str, plan_sha256: str, **extra) -> dict:
    return {"format": SIDECAR_FORMAT, "model": spec.to_metadata(),
            "batch_profile": dict(zip(("min", "opt", "max"), map(int, batch))), "precision": precision,
            "tensorrt_version": str(trt_version), "gpu": dict(gpu), "source_onnx_sha256": source_sha256,
            "plan_sha256": plan_sha256, **extra}


def read_sidecar(plan: str | os.PathLike) -> dict:
    path = sidecar_path(plan)
    if not path.is_file():
        raise DdpmEdgeError(f"{Path(plan).name} has no sidecar {path.name}: a plan alone cannot be checked; "
                            "rebuild it with ddpm-export --trt")
    try:
        meta = json.loads(path.read_text())
        if meta.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        profile = meta["batch_profile"]
        batch = (int(profile["min"]), int(profile["opt"]), int(profile["max"]))
        for key in ("precision", "tensorrt_version", "plan_sha256", "source_onnx_sha256"):
            str(meta[key])
        meta["gpu"]["name"], meta["gpu"]["compute_capability"]
        meta["spec"] = ModelSpec.from_metadata(meta["model"])
        meta["batch"] = batch
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DdpmEdgeError(f"{path.name} is not a ddpm-edge TensorRT sidecar ({type(e).__name__}: {e})") from None
    return meta


def check_sidecar(meta: dict, plan: Path, trt_version: str, gpu: dict) -> None:
    """Refuse a plan that was changed, or built by another TensorRT or for another GPU."""
    if sha256_file(plan) != meta["plan_sha256"]:
        raise DdpmEdgeError(f"{plan.name} does not match its sidecar (the plan changed after it was built); rebuild it")
    if meta["tensorrt_version"] != str(trt_version):
        raise DdpmEdgeError(f"{plan.name} was built with TensorRT {meta['tensorrt_version']}, this is TensorRT "
                            f"{trt_version}; plans only load in the version that built them: rebuild it here")
    built = meta["gpu"]
    if (built["name"], built["compute_capability"]) != (gpu["name"], gpu["compute_capability"]):
        raise DdpmEdgeError(f"{plan.name} was built for {built['name']} (compute {built['compute_capability']}), "
                            f"this GPU is {gpu['name']} (compute {gpu['compute_capability']}): rebuild it here")


class TensorRTUnet:
    backend = "tensorrt"

    def __init__(self, path: str | os.PathLike, max_batch: int | None = None):
        self.path = Path(path)
        trt = self.trt = import_tensorrt(f"{self.path.name}: TensorRT engines")
        cudart = self.cudart = import_cudart()
        if not self.path.is_file():
            raise DdpmEdgeError(f"engine file not found: {self.path}")
        meta = read_sidecar(self.path)
        check_sidecar(meta, self.path, trt.__version__, gpu_info(cudart))
        self.meta, self.spec = meta, meta["spec"]
        self.precision = str(meta.get("precision") or self.spec.precision)
        self.min_batch, _, self.profile_max = meta["batch"]
        if max_batch is not None and max_batch < 1:
            raise DdpmEdgeError(f"max batch must be >= 1, got {max_batch}")
        self.max_batch = min(max_batch or self.profile_max, self.profile_max)
        self._sha256 = meta["plan_sha256"]

        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise DdpmEdgeError(f"TensorRT could not deserialise {self.path.name}")
        self._check_engine()
        self.context = self.engine.create_execution_context()
        self.stream = cuda_call(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: dict[str, int] = {}   # tensor name → device pointer, sized for self._capacity rows
        self._capacity = 0

    @property
    def sha256(self) -> str:
        return self._sha256

    def _check_engine(self) -> None:
        trt, engine = self.trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if sorted(names) != sorted(TENSOR_NAMES):
            raise DdpmEdgeError(f"{self.path.name} is not a ddpm UNet engine: tensors {names}, expected x, t, c, eps")
        for name in names:
            mode = trt.TensorIOMode.INPUT if name in INPUT_NAMES else trt.TensorIOMode.OUTPUT
            if engine.get_tensor_mode(name) != mode:
                raise DdpmEdgeError(f"{self.path.name}: tensor {name} has the wrong direction")
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise DdpmEdgeError(f"{self.path.name}: tensor {name} is {engine.get_tensor_dtype(name)}, expected float32")
        expected = self.spec.profile(*self.meta["batch"])
        for name in INPUT_NAMES:
            got = tuple(tuple(int(d) for d in shape) for shape in engine.get_tensor_profile_shape(name, 0))
            if got != expected[name]:
                raise DdpmEdgeError(f"{self.path.name}: profile of {name} is {got}, its sidecar says {expected[name]}")

    def _ensure_capacity(self, n: int) -> None:
        if n <= self._capacity:
            return
        self._free()
        for name, shape in self.spec.shapes(n).items():
            nbytes = int(np.prod(shape)) * 4
            self._buffers[name] = cuda_call(self.cudart, self.cudart.cudaMalloc(nbytes), "cudaMalloc")
        self._capacity = n

    def _copy(self, dst: int, src: int, nbytes: int, kind) -> None:
        cuda_call(self.cudart, self.cudart.cudaMemcpyAsync(dst, src, nbytes, kind, self.stream), "cudaMemcpyAsync")

    def _run(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        """One execution of min..max profile rows (run_chunked pads and splits); [rows, C, H, W] float32."""
        rows = x.shape[0]
        self._ensure_capacity(rows)
        h2d, d2h = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, array in (("x", x), ("t", t), ("c", c)):
            if not self.context.set_input_shape(name, array.shape):
                raise DdpmEdgeError(f"TensorRT rejected input {name} of shape {array.shape}")
            self._copy(self._buffers[name], array.ctypes.data, array.nbytes, h2d)
        for name in TENSOR_NAMES:
            if not self.context.set_tensor_address(name, self._buffers[name]):
                raise DdpmEdgeError(f"TensorRT rejected the device buffer of {name}")
        if not self.context.execute_async_v3(native_handle(self.stream)):
            raise DdpmEdgeError("TensorRT execution failed (execute_async_v3 returned False)")
        eps = np.empty(self.spec.shapes(rows)["eps"], dtype=np.float32)
        self._copy(eps.ctypes.data, self._buffers["eps"], eps.nbytes, d2h)
        cuda_call(self.cudart, self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return eps

    def __call__(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        return run_chunked(self.spec, self._run, x, t, c, self.max_batch, self.min_batch)

    def _free(self) -> None:
        for pointer in self._buffers.values():
            self.cudart.cudaFree(pointer)
        self._buffers.clear()
        self._capacity = 0

    def close(self) -> None:
        if getattr(self, "_buffers", None):
            self._free()
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
