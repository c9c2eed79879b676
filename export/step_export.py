"""`ddpm-export --gpu-loop`: write the UNet + sampler step fused into one ONNX graph, for the
device-resident sampling loop (the graph itself: runtime/backends/loop_graph.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ddpm_edge.runtime.files import atomic_path, check_writable
from ddpm_edge.runtime.backends.loop_graph import LOOP_GRAPH, LOOP_INPUTS, LOOP_OUTPUTS, fuse_loop  # noqa: F401 (re-exported)

from .onnx_export import read_onnx


def export_loop(unet_onnx: str | os.PathLike, out: str | os.PathLike, guided: bool = False,
                log: Callable[[str], None] = lambda message: None) -> Path:
    """`ddpm-export --onnx unet.onnx --gpu-loop unet_loop.onnx [--loop-guidance]`: write the fused loop
    model atomically; `guided`, the classifier-free guidance graph (2N UNet rows per step, any w)."""

    out = check_writable(out)
    proto = read_onnx(unet_onnx)
    fused = fuse_loop(proto, guided=guided)
    with atomic_path(out) as tmp:
        tmp.write_bytes(fused.SerializeToString())
    kind = "UNet with guidance + DDPM/DDIM step" if guided else "UNet + DDPM/DDIM step"
    log(f"wrote {out} ({kind}, one run per timestep; run it with ddpm-run --gpu-loop)")
    return out
