"""`ddpm-export`: a course (or ddpm-edge) checkpoint → a validated, self-describing unet.onnx."""
from __future__ import annotations

from pathlib import Path

import typer

from ddpm_edge.runtime.cli_errors import make_app, one_line_errors

app = make_app("Export the course's ContextUnet checkpoint to ONNX, validated against torch.")


@app.command()
@one_line_errors("ddpm-export")
def export(
    weights: Path = typer.Option(..., "--weights", "-w", help="checkpoint .pth (course state_dict or ddpm-edge)"),
    out: Path = typer.Option(Path("unet.onnx"), "--out", "-o", help="ONNX file to write"),
    shortcut: str = typer.Option("seed:0", help="course checkpoints: freeze init_conv's random shortcut as "
                                                "seed:N (= course forward after torch.manual_seed(N)) or zero"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Export WEIGHTS to ONNX (dynamic batch, one file), check it against torch, then write it."""
    from .onnx_export import export_onnx

    export_onnx(weights, out, shortcut=shortcut, log=(lambda m: None) if quiet else (lambda m: typer.echo(m, err=True)))


def main() -> None:
    app()
