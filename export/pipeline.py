"""The whole of `ddpm-export`: checkpoint or ONNX in; validated fp32 ONNX, fp16 ONNX, fused loop model and
TensorRT engine out, each step feeding the next. The argument combination, the batch profile and
TensorRT's presence are checked before any export work; each writer checks its own output first."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.files import check_outputs


def run_export(weights: Path | None, onnx_in: Path | None, out: Path, shortcut: str = "seed:0",
               fixed_batch: int | None = None, fp16: bool = False,
               trt: Path | None = None, batch: str = "1:16:256", workspace_mib: int = 2048,
               gpu_loop: Path | None = None, loop_guidance: bool = False, int8: bool = False,
               gate: str | None = None, gate_n: int | None = None,
               log: Callable[[str], None] = lambda message: None) -> None:
    if (gate is not None or gate_n is not None) and not int8:
        raise DdpmEdgeError("--gate and --gate-n set the quality gate of --int8; give --int8 too")
    if (weights is None) == (onnx_in is None):
        raise DdpmEdgeError("give exactly one of --weights (a checkpoint) or --onnx (an exported unet.onnx)")
    if onnx_in is not None and not (fp16 or trt or gpu_loop or int8):
        raise DdpmEdgeError("--onnx needs something to do: --fp16, --int8, --trt or --gpu-loop")
    if int8 and (fp16 or trt or gpu_loop):
        raise DdpmEdgeError("--int8 writes one model to --out; run it without --fp16, --trt or --gpu-loop")
    if int8 and onnx_in is not None and onnx_in.resolve() in (out.resolve(), out.with_suffix(".bin").resolve()):
        raise DdpmEdgeError("--int8 writes to --out; give an --out other than the --onnx it reads")
    if fixed_batch is not None and weights is None:
        raise DdpmEdgeError("--fixed-batch shapes a fresh export; give --weights, not --onnx")
    if loop_guidance and gpu_loop is None:
        raise DdpmEdgeError("--loop-guidance shapes the --gpu-loop model; give --gpu-loop too")
    if fp16 and onnx_in is not None and onnx_in.resolve() == out.resolve():
        raise DdpmEdgeError("--fp16 writes to --out; give an --out other than the --onnx it reads")
    check_outputs({"--weights": weights, "--onnx": onnx_in},
                  {"--out": out if (weights is not None or fp16 or int8) else None, "--gpu-loop": gpu_loop, "--trt": trt,
                   "--trt sidecar": None if trt is None else Path(f"{trt}.json")})
    if trt is not None:
        from .tensorrt_build import parse_batch
        from ddpm_edge.runtime.backends.trt import import_cudart, import_tensorrt
        parse_batch(batch)
        import_tensorrt("--trt (TensorRT engine build)")  # fail before any export work when absent
        import_cudart()
    source = onnx_in
    with tempfile.TemporaryDirectory(prefix="ddpm-export-") as scratch:
        if weights is not None:
            from .onnx_export import export_onnx
            fp32 = Path(scratch) / "unet_fp32.onnx" if fp16 or int8 else out
            export_onnx(weights, fp32, shortcut=shortcut, fixed_batch=fixed_batch, log=log)
            source = fp32
        if int8:
            from .int8 import export_int8
            export_int8(source, out, gate=gate, gate_n=gate_n, log=log)
            return
        if fp16:
            from .fp16 import export_fp16
            export_fp16(source, out, log=log)
            source = out
        if gpu_loop is not None:
            from .step_export import export_loop
            export_loop(source, gpu_loop, guided=loop_guidance, log=log)
        if trt is not None:
            from .tensorrt_build import build_engine
            build_engine(source, trt, batch=batch, workspace_mib=workspace_mib, log=log)

