"""A stand-in for `cuda.bindings.runtime` (CUDA Python): the calls runtime/backends/trt.py makes,
with the real calling convention (every call returns a tuple whose first item is a cudaError_t).
"Device" memory is host memory from ctypes, so copies are real `memmove`s that tests can check."""
from __future__ import annotations

import ctypes
import enum
import sys
import types
from dataclasses import dataclass


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorNoDevice = 100


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaStream_t:
    """No __int__: int(cuda_obj) is deprecated in cuda-bindings 13; the handle comes from
    cuda.bindings.utils.get_cuda_native_handle (installed beside this module by install_cudart)."""
    _next = 0x5000

    def __init__(self):
        cudaStream_t._next += 16
        self.handle = cudaStream_t._next


def get_cuda_native_handle(obj) -> int:
    return obj.handle


@dataclass
class cudaDeviceProp:
    name: bytes
    major: int
    minor: int


def make_fake_cudart(name: str = "NVIDIA H100 80GB HBM3", capability=(9, 0), devices: int = 1) -> types.ModuleType:
    mod = types.ModuleType("cuda.bindings.runtime")
    mod.cudaError_t, mod.cudaMemcpyKind, mod.cudaStream_t = cudaError_t, cudaMemcpyKind, cudaStream_t
    mod.allocations = {}          # pointer → ctypes buffer (live "device" allocations)
    mod.copies = []               # (kind, nbytes)
    mod.streams = []

    def cudaGetDeviceCount():
        return (cudaError_t.cudaSuccess, devices) if devices else (cudaError_t.cudaErrorNoDevice, 0)

    def cudaGetDevice():
        return cudaError_t.cudaSuccess, 0

    def cudaGetDeviceProperties(device):
        return cudaError_t.cudaSuccess, cudaDeviceProp(name.encode() + b"\0" * 8, *capability)

    def cudaMalloc(nbytes):
        buffer = ctypes.create_string_buffer(int(nbytes))
        pointer = ctypes.addressof(buffer)
        mod.allocations[pointer] = buffer
        return cudaError_t.cudaSuccess, pointer

    def cudaFree(pointer):
        mod.allocations.pop(int(pointer), None)
        return (cudaError_t.cudaSuccess,)

    def cudaMemcpyAsync(dst, src, nbytes, kind, stream):
        device_side = {cudaMemcpyKind.cudaMemcpyHostToDevice: dst, cudaMemcpyKind.cudaMemcpyDeviceToHost: src}[kind]
        if not any(p <= device_side < p + len(b) for p, b in mod.allocations.items()):
            return (cudaError_t.cudaErrorMemoryAllocation,)
        ctypes.memmove(int(dst), int(src), int(nbytes))
        mod.copies.append((kind, int(nbytes)))
        return (cudaError_t.cudaSuccess,)

    def cudaStreamCreate():
        stream = cudaStream_t()
        mod.streams.append(stream)
        return cudaError_t.cudaSuccess, stream

    def cudaStreamSynchronize(stream):
        return (cudaError_t.cudaSuccess,)

    def cudaStreamDestroy(stream):
        return (cudaError_t.cudaSuccess,)

    for fn in (cudaGetDeviceCount, cudaGetDevice, cudaGetDeviceProperties, cudaMalloc, cudaFree, cudaMemcpyAsync,
               cudaStreamCreate, cudaStreamSynchronize, cudaStreamDestroy):
        setattr(mod, fn.__name__, fn)
    return mod


def install_cudart(monkeypatch, cudart: types.ModuleType) -> None:
    """Make `from cuda.bindings import runtime` return `cudart`."""
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    utils = types.ModuleType("cuda.bindings.utils")
    utils.get_cuda_native_handle = get_cuda_native_handle
    cuda.__path__, bindings.__path__ = [], []
    cuda.bindings, bindings.runtime, bindings.utils = bindings, cudart, utils
    for key, module in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", cudart),
                        ("cuda.bindings.utils", utils)):
        monkeypatch.setitem(sys.modules, key, module)
