"""`ddpm-export`: a course (or ddpm-edge) checkpoint → a validated, self-describing unet.onnx."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ddpm_edge.runtime.cli_errors import make_app, one_line_errors, require, run_app, version_option

app = make_app("Export the course's ContextUnet checkpoint to ONNX, validated against torch.")


@app.command()
@one_line_errors("ddpm-export")
def export(
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="checkpoint .pth (course state_dict or ddpm-edge)"),
    onnx_in: Optional[Path] = typer.Option(None, "--onnx", help="start from this exported unet.onnx instead of --weights "
                                                                "(for --fp16, --int8, --trt, --gpu-loop)"),
    out: Path = typer.Option(Path("unet.onnx"), "--out", "-o", help="ONNX file to write"),
    shortcut: str = typer.Option("seed:0", help="course checkpoints: freeze init_conv's random shortcut as "
                                                "seed:N (= course forward after torch.manual_seed(N)) or zero"),
    fixed_batch: Optional[int] = typer.Option(None, "--fixed-batch", min=1,
                                              help="fix the batch axis to N (OpenCV 4.x DNN needs a fixed batch); "
                                                   "default dynamic"),
    fp16: bool = typer.Option(False, "--fp16", help="write an fp16 ONNX (norms fp32, float32 I/O) to --out, gated: "
                                                   "DDIM-25 PSNR >= 35 dB against fp32 or nothing is written"),
    int8: bool = typer.Option(False, "--int8", help="write an int8 model to --out: .onnx (onnxruntime QDQ) or .xml "
                                                   "(OpenVINO IR via NNCF), calibrated on sampling trajectories; "
                                                   "sensitive layers stay float"),
    gate: Optional[str] = typer.Option(None, "--gate", help="--int8 quality gate: the solver config at which the "
                                                         "yardstick must find int8 equal to fp32 (default "
                                                         "dpmpp-2m-sde:10:guidance=2), or none"),
    gate_n: Optional[int] = typer.Option(None, "--gate-n", help="--int8 quality gate: sprites per seed (default 500)"),
    trt: Optional[Path] = typer.Option(None, "--trt", help="also build a TensorRT engine (.plan + .plan.json sidecar) "
                                                          "from the ONNX; needs tensorrt and an NVIDIA GPU"),
    batch: str = typer.Option("1:16:256", "--batch", help="TensorRT batch profile MIN:OPT:MAX"),
    workspace_mib: int = typer.Option(2048, "--workspace-mib", help="TensorRT builder memory limit (MiB)"),
    gpu_loop: Optional[Path] = typer.Option(None, "--gpu-loop", help="also write the fused UNet + step loop model "
                                                                    "for ddpm-run --gpu-loop"),
    loop_guidance: bool = typer.Option(False, "--loop-guidance", help="the --gpu-loop model does classifier-free "
                                                                     "guidance (ddpm-run --guidance W; two UNet "
                                                                     "rows per sprite at any W)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    version: bool = version_option("ddpm-export"),
) -> None:
    """Export WEIGHTS to ONNX (dynamic batch, one file), check it against torch, then write it.
    With --onnx, convert/build from an existing ONNX instead (--fp16, --trt, --gpu-loop)."""
    require(*(("torch", "onnx") if weights is not None else ("onnx",)))
    from .pipeline import run_export

    run_export(weights, onnx_in, out, shortcut=shortcut, fixed_batch=fixed_batch, fp16=fp16, trt=trt, batch=batch, workspace_mib=workspace_mib,
               gpu_loop=gpu_loop, loop_guidance=loop_guidance, int8=int8, gate=gate, gate_n=gate_n,
               log=(lambda m: None) if quiet else (lambda m: typer.echo(m, err=True)))


def main() -> None:
    run_app(app, "ddpm-export")
