"""`ddpm-run`: sample sprites from an ONNX model or TensorRT engine, without torch."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from .api import GenerationParams, SpriteGenerator
from .cli_errors import make_app, one_line_errors, progress_bar
from .errors import DdpmEdgeError
from .files import atomic_path, check_writable
from .images import make_sheet, to_uint8

app = make_app("Sample sprites from the course's ContextUnet (ONNX Runtime or TensorRT, no torch).")


class SamplerName(str, Enum):
    ddpm = "ddpm"
    ddim = "ddim"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@app.command()
@one_line_errors("ddpm-run")
def run(
    engine: Optional[Path] = typer.Option(None, "--engine", "-e", help="unet.onnx or unet.plan; default: the shipped model"),
    n: int = typer.Option(16, "-n", "--num", help="number of sprites"),
    sampler: SamplerName = typer.Option(SamplerName.ddpm, help="ddpm (all T steps) or ddim (--steps)"),
    steps: Optional[int] = typer.Option(None, help="DDIM steps (default 25)"),
    seed: Optional[int] = typer.Option(None, help="random seed; same seed, same sprites"),
    context: Optional[str] = typer.Option(None, "--context", "-c",
                                          help="a class name (hero), numbers (1,0,0.6,0,0), random, or none"),
    guidance: float = typer.Option(0.0, help="classifier-free guidance weight w: (1+w)·eps(c) − w·eps(0)"),
    out: Path = typer.Option(Path("sprites.png"), "--out", "-o", help="sprite sheet .png, or .npy for raw float32 samples"),
    scale: int = typer.Option(4, help="nearest-neighbour upscale of each sprite in the sheet"),
    cols: Optional[int] = typer.Option(None, help="sprites per row (default: square grid)"),
    device: Device = typer.Option(Device.auto, help="ONNX Runtime device: auto (CUDA if available), cpu, cuda"),
    max_batch: Optional[int] = typer.Option(None, help="split UNet calls into batches of at most this many"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
) -> None:
    """Generate N sprites and write them as a sprite sheet PNG (or raw samples as .npy)."""
    if n < 1:
        raise DdpmEdgeError(f"-n must be at least 1, got {n}")
    if scale < 1 or (cols is not None and cols < 1):
        raise DdpmEdgeError("--scale and --cols must be at least 1")
    if out.suffix.lower() not in (".png", ".npy"):
        raise DdpmEdgeError(f"--out must end in .png or .npy, got {out.name!r}")
    check_writable(out)
    generator = SpriteGenerator.load(engine, device=device.value, max_batch=max_batch)
    params = GenerationParams(n=n, sampler=sampler.value, steps=steps, seed=seed, context=context, guidance=guidance)
    update, close = progress_bar(f"{params.sampler} x{n}", enabled=not quiet)
    try:
        samples = generator.generate_raw(n, context=context, seed=seed, sampler=params.sampler, steps=steps,
                                         guidance=guidance, progress=update)
    finally:
        close()
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, samples)
        else:
            make_sheet(to_uint8(samples), cols=cols, scale=scale).save(tmp, format="PNG")
    if not quiet:
        typer.echo(f"wrote {out} ({n} sprites, {params.sampler}, model {generator.unet.path.name})", err=True)


def main() -> None:
    app()
