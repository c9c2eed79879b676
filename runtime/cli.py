"""`ddpm-run`: sample sprites from an ONNX model or TensorRT engine, without torch."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .api import render
from .assets.background import DEFAULT_TOLERANCE
from .assets.records import read_record
from .info import shipped_classes
from .cli_errors import Device, make_app, one_line_errors, progress_bar, run_app, version_option
from .assets.outputs import DEFAULT_FRAME_MS, Targets
from .solvers import DEFAULT_CLASS_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLER_HELP, SAMPLERS, SPACINGS

_CLASSES = shipped_classes()
CONTEXT_HELP = (f"a class name of the model (the shipped model's: {', '.join(_CLASSES)}; `ddpm-info MODEL` lists "
                f"another model's), numbers (one per class, e.g. 1,0,0.6,0,0), random, or none" if _CLASSES else
                "a class name of the model (`ddpm-info MODEL` lists them), numbers (one per class), random, or none")
app = make_app("Sample sprites from the course's ContextUnet (ONNX Runtime or TensorRT, no torch).")


class AtlasFormat(str, Enum):
    hash = "hash"
    array = "array"
    godot = "godot"


class BackendName(str, Enum):
    auto = "auto"
    onnxruntime = "onnxruntime"
    openvino = "openvino"
    tensorrt = "tensorrt"


class PrecisionName(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"
    fp16 = "fp16"


SamplerName = Enum("SamplerName", {name: name for name in SAMPLERS}, type=str)    # the solver registry
SpacingName = Enum("SpacingName", {name: name for name in SPACINGS}, type=str)
SAMPLER_CHOICES = "; ".join(f"{name}: {SAMPLER_HELP[name]} "
                            f"({'all T' if DEFAULT_STEPS[name] is None else DEFAULT_STEPS[name]} steps)"
                            for name in SAMPLERS)


class RngName(str, Enum):
    pcg64 = "pcg64"
    philox = "philox"


@app.command()
@one_line_errors("ddpm-run")
def run(
    engine: Optional[Path] = typer.Option(None, "--engine", "-e", help="unet.onnx or unet.plan; default: the shipped model"),
    n: Optional[int] = typer.Option(None, "-n", "--num", help="number of sprites (default 16)"),
    sampler: Optional[SamplerName] = typer.Option(None, help=f"the solver (default {DEFAULT_SAMPLER}). {SAMPLER_CHOICES}"),
    steps: Optional[int] = typer.Option(None, help="solver steps, 1 to T (default: the solver's; ddpm always runs all T)"),
    eta: Optional[float] = typer.Option(None, help="ddim only: η from 0 (deterministic, the course's DDIM) to 1 "
                                                   "(DDPM-like noise) (default 0)"),
    spacing: Optional[SpacingName] = typer.Option(None, help="which timesteps the solver visits: uniform (the course's "
                                                             "DDIM stride, the default), logsnr, karras"),
    seed: Optional[int] = typer.Option(None, help="random seed; same seed, same sprites (default: drawn and recorded)"),
    context: Optional[str] = typer.Option(None, "--context", "-c",
                                          help=CONTEXT_HELP),
    guidance: Optional[float] = typer.Option(None, help="classifier-free guidance weight w: (1+w)·eps(c) − w·eps(0) "
                                                        f"(default {DEFAULT_CLASS_GUIDANCE:g} when a class is asked for with a "
                                                        "modern solver; 0 for ddpm, ddim and unconditional runs)"),
    rng: Optional[RngName] = typer.Option(None, "--rng", help="noise generator: pcg64 (NumPy's) or philox (portable: "
                                                            "the same noise in the browser)"),
    out: Path = typer.Option(Path("sprites.png"), "--out", "-o", help="sprite sheet .png, or .npy for raw float32 samples"),
    scale: Optional[int] = typer.Option(None, help="nearest-neighbour upscale of each sprite (default 4)"),
    cols: Optional[int] = typer.Option(None, help="sprites per row (default: square grid)"),
    padding: Optional[int] = typer.Option(None, help="pixels around and between sheet cells (default 0)"),
    background: Optional[str] = typer.Option(None, "--background", "-b",
                                             help="keep (default), transparent (keyed to alpha), or a colour "
                                                  "that replaces it (white, #RRGGBB)"),
    tolerance: Optional[int] = typer.Option(None, help="background keying: per-channel distance 0-255 from the "
                                                       f"border colour still counted as background (default {DEFAULT_TOLERANCE})"),
    atlas: bool = typer.Option(False, "--atlas", help="also write an atlas beside the sheet (--atlas-format, "
                                                      "default a TexturePacker JSON hash)"),
    atlas_format: Optional[AtlasFormat] = typer.Option(None, "--atlas-format",
                                                       help="hash or array: TexturePacker JSON (sheet.json); godot: "
                                                            "Godot 4 SpriteFrames sheet.tres + an AtlasTexture per "
                                                            "sprite in sheet/ (implies --atlas)"),
    each: Optional[Path] = typer.Option(None, "--each", help="also write one PNG per sprite into this folder"),
    gif: Optional[Path] = typer.Option(None, "--gif", help="also write the denoising as an animation: .gif, "
                                                            "or .png/.apng for APNG"),
    gif_every: Optional[int] = typer.Option(None, help="an animation frame every K sampling steps (default: about 30 frames)"),
    gif_ms: int = typer.Option(DEFAULT_FRAME_MS, help="milliseconds per animation frame (the last one is held longer)"),
    from_png: Optional[Path] = typer.Option(None, "--from", help="regenerate a PNG written by ddpm-run from the "
                                                                  "parameters it records; other options override them"),
    device: Device = typer.Option(Device.auto, help="ONNX Runtime device: auto (CUDA if available), cpu, cuda"),
    backend: BackendName = typer.Option(BackendName.auto, help="auto (by file: .onnx onnxruntime, .xml openvino, "
                                                               ".plan tensorrt), onnxruntime, openvino, tensorrt"),
    precision: Optional[PrecisionName] = typer.Option(None, help="fp32, bf16 (openvino), int8 (an int8 model), fp16 "
                                                                 "(default: what the model file holds)"),
    max_batch: Optional[int] = typer.Option(None, help="split UNet calls into batches of at most this many"),
    io_binding: bool = typer.Option(False, "--io-binding", help="ONNX Runtime: bind inputs/outputs to buffers "
                                                               "allocated once on the device"),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="ONNX Runtime CUDA: capture a CUDA graph per batch "
                                                               "size and replay it (implies --io-binding)"),
    gpu_loop: bool = typer.Option(False, "--gpu-loop", help="run the whole sampling loop on the device (UNet + step "
                                                           "fused; a loop model from ddpm-export --gpu-loop, or a "
                                                           "UNet .onnx fused on load)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or summary"),
    version: bool = version_option("ddpm-run"),
) -> None:
    """Generate N sprites and write them as a sprite sheet PNG (or raw samples as .npy), optionally with
    a TexturePacker atlas, one PNG per sprite and a denoising animation. Every PNG records its
    parameters; `--from sheet.png` regenerates it byte for byte."""
    targets = Targets(sheet=out, atlas=atlas or atlas_format is not None, each=each, animation=gif,
                      frames_every=gif_every, frame_ms=gif_ms,
                      atlas_format=atlas_format.value if atlas_format else "hash")
    update, close = progress_bar("sampling", enabled=not quiet)
    try:
        batch = render(targets, engine=engine, source=from_png, progress=update,
                       log=None if quiet else (lambda message: typer.echo(message, err=True)),
                       load_options=dict(device=device.value, max_batch=max_batch, io_binding=io_binding,
                                         cuda_graph=cuda_graph, gpu_loop=gpu_loop, backend=backend.value,
                                         precision=precision.value if precision else None),
                       n=n, sampler=sampler.value if sampler else None, steps=steps, seed=seed, context=context,
                       eta=eta, spacing=spacing.value if spacing else None, rng=rng.value if rng else None,
                       guidance=guidance, background=background, tolerance=tolerance,
                       cols=cols, scale=scale, padding=padding)
    finally:
        close()
    if not quiet:
        written = ", ".join(str(p) for p in (out, targets.atlas_path, gif) if p is not None)
        if each is not None:
            written += f", {plural(len(batch.names), 'sprite')} in {each}"
        p = batch.params
        solver = p.sampler + (f" eta {p.eta:g}" if p.eta else "") + (f" {p.spacing}" if p.spacing != "uniform" else "")
        sprite = read_record(from_png).get("sprite") if from_png is not None else None
        what = plural(p.n, "sprite") if sprite is None else f"sprite {sprite} of {p.n}"
        typer.echo(f"wrote {written} ({what}, {solver} {plural(p.steps, 'step')}, seed {p.seed}, "
                   f"model {Path(batch.model_path).name}, {batch.backend} {batch.precision})", err=True)


def plural(count: int, noun: str) -> str:
    """"1 sprite", "16 sprites"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def main() -> None:
    run_app(app, "ddpm-run")
