"""ONNX → TensorRT plan, with its sidecar and a timing cache: `ddpm-export --onnx unet.onnx --trt unet.plan`.

    profile      one optimization profile over the batch axis, min:opt:max → `ModelSpec.profile`
    precision    the ONNX's own: fp32, or fp16 from `ddpm-export --fp16` (norms in fp32, float32 I/O),
                 built as a strongly typed network (TensorRT 10: the STRONGLY_TYPED creation flag;
                 TensorRT 11: every network is strongly typed, and the FP16 builder flag is gone).
                 `fp16=True` on an fp32 ONNX is the TensorRT 10 weak-typing path (BuilderFlag.FP16 on
                 a network that is not strongly typed); TensorRT 11 refuses it with a reason.
    workspace    the builder's memory limit (MemoryPoolType.WORKSPACE)
    timing cache beside the plan, named by a key over (source ONNX sha256, TensorRT version, GPU name,
                 compute capability): another model, TensorRT or GPU gets its own file, never a stale one.
    sidecar      unet.plan.json (runtime/backends/trt.py): checked at load.

Plan and sidecar are written atomically, together; nothing is left behind on failure.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ddpm_edge.runtime.contract import ModelSpec
from .onnx_export import read_onnx
from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.files import atomic_path, atomic_write_bytes, check_writable, sha256_file
from ddpm_edge.runtime.backends.trt import (gpu_info, import_cudart, import_tensorrt, make_sidecar,
                                                sidecar_path, trt_major)

DEFAULT_BATCH = (1, 16, 256)
DEFAULT_WORKSPACE_MIB = 2048


@dataclass
class EngineResult:
    plan: Path
    sidecar: Path
    timing_cache: Path
    precision: str
    batch: tuple[int, int, int]
    tensorrt_version: str
    gpu: dict


def parse_batch(text: str) -> tuple[int, int, int]:
    """'1:16:256' → (1, 16, 256); a single number N means N:N:N."""
    parts = str(text).split(":")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise DdpmEdgeError(f"--batch must be MIN:OPT:MAX integers (e.g. 1:16:256), got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise DdpmEdgeError(f"--batch must be MIN:OPT:MAX (e.g. 1:16:256), got {text!r}")
    ModelSpec().profile(*values)  # validates 1 <= min <= opt <= max
    return values


def timing_cache_path(plan: Path, source_sha256: str, trt_version: str, gpu: dict) -> Path:
    key = json.dumps([source_sha256, str(trt_version), gpu["name"], gpu["compute_capability"]])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return plan.with_name(f"{plan.name}.timing-{digest}.cache")


def onnx_spec(path: Path) -> ModelSpec:
    model = read_onnx(path)
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("graph"):
        raise DdpmEdgeError(f"{path.name} is a {meta['graph']} model; TensorRT engines are built from the UNet ONNX")
    return ModelSpec.from_metadata(meta)


def build_engine(onnx_path: str | os.PathLike, plan: str | os.PathLike, batch=DEFAULT_BATCH,
                 workspace_mib: int = DEFAULT_WORKSPACE_MIB, fp16: bool = False,
                 log: Callable[[str], None] = lambda message: None) -> EngineResult:
    onnx_path, plan = Path(onnx_path), check_writable(plan)
    if not onnx_path.is_file():
        raise DdpmEdgeError(f"ONNX file not found: {onnx_path}")
    if workspace_mib < 1:
        raise DdpmEdgeError(f"workspace must be at least 1 MiB, got {workspace_mib}")
    batch = parse_batch(":".join(map(str, batch))) if not isinstance(batch, str) else parse_batch(batch)
    trt = import_tensorrt("--trt (TensorRT engine build)")
    gpu = gpu_info(import_cudart())
    spec = onnx_spec(onnx_path)
    source_sha256 = sha256_file(onnx_path)
    major = trt_major(trt.__version__)

    weak_fp16 = fp16 and spec.precision != "fp16"
    if weak_fp16 and major >= 11:
        raise DdpmEdgeError(f"TensorRT {trt.__version__} builds strongly typed networks only: fp16 comes from an "
                            "fp16 ONNX (ddpm-export --fp16 --trt …), not a builder flag")
    precision = "fp16" if (fp16 or spec.precision == "fp16") else "fp32"

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 11: every network is strongly typed; its STRONGLY_TYPED flag is deprecated and ignored
    flags = 0 if (weak_fp16 or major >= 11) else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DdpmEdgeError(f"TensorRT could not parse {onnx_path.name}: {errors[:300]}")

    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in spec.profile(*batch).items():
        profile.set_shape(name, lo, opt, hi)
    if config.add_optimization_profile(profile) < 0:
        raise DdpmEdgeError(f"TensorRT refused the batch profile {batch[0]}:{batch[1]}:{batch[2]}")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if weak_fp16:  # TensorRT 10 only: let the builder pick fp16 kernels in a weakly typed network
        config.set_flag(trt.BuilderFlag.FP16)

    cache_path = timing_cache_path(plan, source_sha256, trt.__version__, gpu)
    cached = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(cached)     # None when the bytes are not a timing cache
    reused = cache is not None and config.set_timing_cache(cache, False)  # ignore_mismatch=False: foreign → False
    if not reused:
        if cached:
            log(f"timing cache {cache_path.name} did not fit this TensorRT/GPU; starting a new one")
        config.set_timing_cache(config.create_timing_cache(b""), False)
    log(f"building TensorRT {trt.__version__} engine on {gpu['name']} (compute {gpu['compute_capability']}): "
        f"{precision}, batch {batch[0]}:{batch[1]}:{batch[2]}, workspace {workspace_mib} MiB"
        + (", timing cache reused" if reused else ""))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DdpmEdgeError("TensorRT could not build the engine (see the TensorRT messages above)")
    data = bytes(serialized)

    sidecar = sidecar_path(plan)
    with atomic_path(plan) as plan_tmp, atomic_path(sidecar) as meta_tmp:
        plan_tmp.write_bytes(data)
        meta = make_sidecar(spec, batch, precision, trt.__version__, gpu, source_sha256, sha256_file(plan_tmp),
                            strongly_typed=not weak_fp16, workspace_mib=workspace_mib)
        meta_tmp.write_text(json.dumps(meta, indent=2) + "\n")
    atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    log(f"wrote {plan} ({len(data) / 1e6:.1f} MB) and {sidecar.name}")
    return EngineResult(plan, sidecar, cache_path, precision, batch, str(trt.__version__), gpu)
