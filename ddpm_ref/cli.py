"""`ddpm-train`: train a ContextUnet on a sprite dataset into a resumable ddpm-edge checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ddpm_edge.runtime.cli_errors import Device, make_app, one_line_errors, progress_bar, require, run_app, version_option

DEFAULT_DATA = Path(__file__).parent / "data"

app = make_app("Train the course's ContextUnet (DDPM, T=500) on 16x16 sprites; resumable checkpoints.")


@app.command()
@one_line_errors("ddpm-train")
def train(
    data: Path = typer.Option(DEFAULT_DATA, "--data", "-d",
                              help="dataset: a folder with sprites.npy+labels.npy+dataset.json, the course's "
                                   "sprites_1788_16x16.npy (labels beside it), or a folder of class subfolders of PNGs; "
                                   "default: the shipped emoji sprites"),
    out: Path = typer.Option(Path("checkpoint.pth"), "--out", "-o", help="resumable checkpoint (weights, optimizer, RNG)"),
    weights_out: Optional[Path] = typer.Option(None, "--weights-out", help="also write a weights-only checkpoint at the end"),
    resume: Optional[Path] = typer.Option(None, "--resume",
                                          help="continue from this checkpoint; its settings are kept, only --epochs may be raised"),
    epochs: int = typer.Option(32, help="epochs; the learning rate decays linearly to 0 over them"),
    batch_size: int = typer.Option(100, help="sprites per step"),
    lrate: float = typer.Option(1e-3, help="initial Adam learning rate"),
    n_feat: int = typer.Option(64, help="UNet width (multiple of 8)"),
    seed: int = typer.Option(0, help="seeds weight init, shuffling, noise, flips and context drop"),
    context_drop: float = typer.Option(0.1, help="fraction of samples trained without context (for guidance)"),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="random horizontal flips"),
    course_compat: bool = typer.Option(False, "--course-compat",
                                       help="the course's forward process sqrt(ab)*x0 + (1-ab)*eps instead of sqrt(1-ab)"),
    save_every: int = typer.Option(1, help="write the checkpoint every this many epochs"),
    max_minutes: Optional[float] = typer.Option(None, help="stop (and save) after the epoch that passes this wall time"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
    device: Device = typer.Option(Device.auto, help="auto (CUDA with mixed precision if present), cpu, cuda"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or epoch lines"),
    version: bool = version_option("ddpm-train"),
) -> None:
    """Train on DATA and write OUT (and --weights-out), atomically."""
    require("torch")
    import torch

    from .train import TrainSettings, train as run_training

    if threads is not None:
        torch.set_num_threads(max(1, threads))
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lrate=lrate, n_feat=n_feat, seed=seed,
                             context_drop=context_drop, flip=flip, course_compat=course_compat)
    log = (lambda m: None) if quiet else (lambda m: typer.echo(m, err=True))
    update, close = progress_bar("train", enabled=not quiet,
                                 describe=lambda epoch, loss: f"epoch {epoch} loss {loss:.4f}")
    try:
        run_training(data, out, settings, resume=resume, weights_out=weights_out, save_every=save_every,
                     device=device.value, max_minutes=max_minutes, progress=update, log=log)
    finally:
        close()
    log(f"wrote {out}" + (f" and {weights_out}" if weights_out else ""))


def main() -> None:
    run_app(app, "ddpm-train")
