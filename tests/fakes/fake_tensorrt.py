"""A stand-in for the `tensorrt` Python module (10.x and 11.x): exactly the builder and runtime calls
export/tensorrt_build.py and runtime/backends/trt.py make. A "plan" is a JSON header plus the ONNX
bytes; its execution context runs that ONNX with ONNX Runtime's CPU provider, reading inputs from and
writing eps to the "device" addresses given by set_tensor_address (fake_cuda memory), so the backend's
shapes, copies, chunking and padding are checked for real.

What it enforces like TensorRT does: BuilderFlag.FP16 does not exist in 11.x; a plan deserialises only
in the version that built it; set_input_shape outside the profile returns False; execute needs every
tensor address."""
from __future__ import annotations

import ctypes
import enum
import json
import sys
import types

import numpy as np

MAGIC = b"FAKEPLAN\n"


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 5


def make_fake_tensorrt(version: str = "10.9.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major = int(version.split(".")[0])
    trt.TensorIOMode, trt.DataType, trt.MemoryPoolType = TensorIOMode, DataType, MemoryPoolType
    # TensorRT 11 keeps STRONGLY_TYPED only as a deprecated, ignored flag: this double drops it, so code
    # that still reaches for it on 11 fails here rather than on the release that removes it
    trt.NetworkDefinitionCreationFlag = (NetworkDefinitionCreationFlag if major < 11
                                         else enum.IntEnum("NetworkDefinitionCreationFlag", {}))
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", {"FP16": 0, "TF32": 7} if major < 11 else {"TF32": 7})
    trt.builds = []      # one dict per build_serialized_network call
    trt.executions = []  # batch size of every execute_async_v3

    class Logger:
        WARNING = 2

        def __init__(self, severity=WARNING):
            self.severity = severity

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.onnx = None

    class ParserError:
        def __init__(self, text):
            self.text = text

        def __str__(self):
            return self.text

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        def parse(self, data: bytes) -> bool:
            import onnxruntime as ort
            try:
                ort.InferenceSession(data, providers=["CPUExecutionProvider"])
            except Exception as e:
                self.errors.append(ParserError(f"ModelImporter: {str(e).splitlines()[0][:80]}"))
                return False
            self.network.onnx = data
            return True

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = [list(lo), list(opt), list(hi)]

    class TimingCache:
        def __init__(self, data: bytes):
            self.entries = json.loads(data.decode()) if data else {"version": version, "layers": 0}

        def serialize(self):
            return json.dumps(self.entries).encode()

    class Config:
        def __init__(self):
            self.profiles, self.pools, self.flags, self.cache = [], {}, set(), None

        def add_optimization_profile(self, profile):
            if not profile.shapes or any(not all(a <= b <= c for a, b, c in zip(*shape))
                                         for shape in profile.shapes.values()):
                return -1                   # an empty or inconsistent profile is not added
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def create_timing_cache(self, data: bytes):
            try:
                return TimingCache(bytes(data))
            except ValueError:          # not a timing cache
                return None

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache.entries.get("version") != version and not ignore_mismatch:
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            return Network(flags)

        def create_optimization_profile(self):
            return Profile()

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            strongly = bool(network.flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
            record = {"strongly_typed": strongly or major >= 11, "flags": sorted(f.name for f in config.flags),
                      "workspace": config.pools.get(MemoryPoolType.WORKSPACE),
                      "profiles": [p.shapes for p in config.profiles],
                      "cache_layers_before": config.cache.entries["layers"] if config.cache else None}
            trt.builds.append(record)
            if network.onnx is None or len(config.profiles) != 1:
                return None
            if config.cache is not None:
                config.cache.entries["layers"] += 10
            header = {"version": version, "profile": config.profiles[0].shapes}
            return MAGIC + json.dumps(header).encode() + b"\n" + network.onnx

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name, shape):
            lo, _, hi = self.engine.profile[name]
            shape = list(shape)
            if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return False
            self.shapes[name] = shape
            return True

        def set_tensor_address(self, name, pointer):
            self.addresses[name] = int(pointer)
            return True

        def get_tensor_shape(self, name):
            return self.shapes[name]

        def execute_async_v3(self, stream_handle):
            if type(stream_handle) is not int:
                raise TypeError(f"execute_async_v3(): stream_handle must be an int, got {type(stream_handle)}")
            if set(self.addresses) != {"x", "t", "c", "eps"} or set(self.shapes) != {"x", "t", "c"}:
                return False
            feeds = {}
            for name, shape in self.shapes.items():
                count = int(np.prod(shape))
                raw = (ctypes.c_float * count).from_address(self.addresses[name])
                feeds[name] = np.ctypeslib.as_array(raw).reshape(shape).copy()
            (eps,) = self.engine.session.run(["eps"], feeds)
            out = (ctypes.c_float * eps.size).from_address(self.addresses["eps"])
            np.ctypeslib.as_array(out)[:] = eps.ravel()
            trt.executions.append(self.shapes["x"][0])
            return True

    class Engine:
        def __init__(self, header, onnx_bytes):
            import onnxruntime as ort
            self.profile = header["profile"]
            self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            self.names = ["x", "t", "c", "eps"]

        @property
        def num_io_tensors(self):
            return len(self.names)

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return TensorIOMode.OUTPUT if name == "eps" else TensorIOMode.INPUT

        def get_tensor_dtype(self, name):
            return DataType.FLOAT

        def get_tensor_profile_shape(self, name, profile_index):
            return [tuple(s) for s in self.profile[name]]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes):
            if not data.startswith(MAGIC):
                return None
            header, onnx_bytes = data[len(MAGIC):].split(b"\n", 1)
            header = json.loads(header)
            if header["version"] != version:
                return None
            return Engine(header, onnx_bytes)

    for cls in (Logger, OnnxParser, Builder, Runtime):
        setattr(trt, cls.__name__, cls)
    return trt


def install_tensorrt(monkeypatch, trt: types.ModuleType | None) -> None:
    """`import tensorrt` returns `trt`; None makes it raise ImportError, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
