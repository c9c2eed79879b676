"""`ddpm-export`: a course (or ddpm-edge) checkpoint → a validated, self-describing unet.onnx."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer

from ddpm_edge.runtime.cli_errors import make_app, one_line_errors
from ddpm_edge.runtime.errors import DdpmEdgeError

app = make_app("Export the course's ContextUnet checkpoint to ONNX, validated against torch.")


@app.command()
@one_line_errors("ddpm-export")
def export(
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="checkpoint .pth (course state_dict or ddpm-edge)"),
    onnx_in: Optional[Path] = typer.Option(None, "--onnx", help="start from this exported unet.onnx instead of --weights "
                                                                "(for --fp16, --trt, --gpu-loop)"),
    out: Path = typer.Option(Path("unet.onnx"), "--out", "-o", help="ONNX file to write"),
    shortcut: str = typer.Option("seed:0", help="course checkpoints: freeze init_conv's random shortcut as "
                                                "seed:N (= course forward after torch.manual_seed(N)) or zero"),
    fp16: bool = typer.Option(False, "--fp16", help="write an fp16 ONNX (norms fp32, float32 I/O) to --out, gated: "
                                                   "DDIM-25 PSNR >= 35 dB against fp32 or nothing is written"),
    trt: Optional[Path] = typer.Option(None, "--trt", help="also build a TensorRT engine (.plan + .plan.json sidecar) "
                                                          "from the ONNX; needs tensorrt and an NVIDIA GPU"),
    batch: str = typer.Option("1:16:256", "--batch", help="TensorRT batch profile MIN:OPT:MAX"),
    workspace_mib: int = typer.Option(2048, "--workspace-mib", help="TensorRT builder memory limit (MiB)"),
    gpu_loop: Optional[Path] = typer.Option(None, "--gpu-loop", help="also write the fused UNet + step loop model "
                                                                    "for ddpm-run --gpu-loop"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Export WEIGHTS to ONNX (dynamic batch, one file), check it against torch, then write it.
    With --onnx, convert/build from an existing ONNX instead (--fp16, --trt, --gpu-loop)."""
    log = (lambda m: None) if quiet else (lambda m: typer.echo(m, err=True))
    if (weights is None) == (onnx_in is None):
        raise DdpmEdgeError("give exactly one of --weights (a checkpoint) or --onnx (an exported unet.onnx)")
    if onnx_in is not None and not (fp16 or trt or gpu_loop):
        raise DdpmEdgeError("--onnx needs something to do: --fp16, --trt or --gpu-loop")
    if fp16 and onnx_in is not None and onnx_in.resolve() == out.resolve():
        raise DdpmEdgeError("--fp16 writes to --out; give an --out other than the --onnx it reads")
    if trt is not None:
        from .tensorrt_build import parse_batch
        from ddpm_edge.runtime.tensorrt_backend import import_cudart, import_tensorrt
        parse_batch(batch)
        import_tensorrt("--trt (TensorRT engine build)")  # fail before any export work when absent
        import_cudart()
    source = onnx_in
    with tempfile.TemporaryDirectory(prefix="ddpm-export-") as scratch:
        if weights is not None:
            from .onnx_export import export_onnx
            fp32 = Path(scratch) / "unet_fp32.onnx" if fp16 else out
            export_onnx(weights, fp32, shortcut=shortcut, log=log)
            source = fp32
        if fp16:
            from .fp16 import export_fp16
            export_fp16(source, out, log=log)
            source = out
        if gpu_loop is not None:
            from .step_export import export_loop
            export_loop(source, gpu_loop, log=log)
        if trt is not None:
            from .tensorrt_build import build_engine
            build_engine(source, trt, batch=batch, workspace_mib=workspace_mib, log=log)


def main() -> None:
    app()
