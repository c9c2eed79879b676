"""Fill a game's asset folder with generated sprites, using only the ddpm-edge embedding API.

For every class the model knows (hero, non-hero, food, spell, side-facing for the course model):

    OUT/<class>.png    a sprite sheet, background keyed out to transparency
    OUT/<class>.json   its TexturePacker JSON (hash) atlas: frames <class>/<class>_000, <class>/<class>_001, …
    OUT/<class>/       one PNG per sprite
    OUT/preview.gif    the denoising of the first class, as an animation

    python examples/build_assets.py --out assets/sprites                 # the shipped model
    python examples/build_assets.py --model unet.onnx --n 8 --steps 25 --seed 100

Builds are reproducible (class k uses seed --seed + k) and incremental: a class whose sheet already
records the same parameters, layout and model is skipped, so the script can run on every game build.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ddpm_edge.runtime.api import GenerationParams, SpriteGenerator
from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.assets.outputs import SheetLayout, Targets, write_outputs
from ddpm_edge.runtime.assets.records import read_record


def up_to_date(sheet: Path, params: GenerationParams, layout: SheetLayout, model_sha256: str) -> bool:
    """True when `sheet` exists and records exactly these parameters, layout and model."""
    try:
        record = read_record(sheet)
        recorded = GenerationParams.from_record(record)      # fills fields older records lack
    except DdpmEdgeError:
        return False
    wanted = {**layout.fixed(params.n).as_dict(), "model_sha256": model_sha256}
    return recorded == params and all(record.get(key) == value for key, value in wanted.items())


def build(model: Path | None, out: Path, n: int, steps: int, seed: int, scale: int) -> list[str]:
    """Generate every class into `out`; returns the classes (re)generated."""
    generator = SpriteGenerator.load(model)          # one session, reused for every class
    out.mkdir(parents=True, exist_ok=True)
    layout = SheetLayout(scale=scale, padding=1)
    built = []
    for k, name in enumerate(generator.spec.context_names):
        params = GenerationParams(n=n, sampler="ddim", steps=steps, seed=seed + k, context=name,
                                  background="transparent").resolved(generator.spec.T)   # as recorded
        sheet = out / f"{name}.png"
        if up_to_date(sheet, params, layout, generator.model_sha256) and (out / name).is_dir():
            print(f"{name}: up to date")
            continue
        preview = out / "preview.gif" if k == 0 else None
        batch = generator.generate_batch(params, frames_every="auto" if preview else None)
        write_outputs(batch, Targets(sheet=sheet, atlas=True, each=out / name, animation=preview), layout)
        print(f"{name}: {n} sprites -> {sheet}, {sheet.with_suffix('.json')}, {out / name}/")
        built.append(name)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="unet.onnx (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=Path("assets/sprites"), help="the asset folder to fill")
    parser.add_argument("--n", type=int, default=16, help="sprites per class")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    parser.add_argument("--seed", type=int, default=0, help="class k uses seed SEED + k")
    parser.add_argument("--scale", type=int, default=1, help="nearest-neighbour scale of sheets and sprites")
    args = parser.parse_args(argv)
    try:
        build(args.model, args.out, args.n, args.steps, args.seed, args.scale)
    except DdpmEdgeError as e:
        print(f"build_assets: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
