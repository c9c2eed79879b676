"""Quality of a shipped model, as one number anyone can recompute: class-conditioned accuracy.

    python benchmarks/quality.py [--model weights/unet.onnx] [--data ddpm_ref/data] [--per-class 32]
                                 [--runs ddpm:0,ddim25:0,ddim25:2] [--sheets weights/samples] [--out quality.json]

1. Split the dataset (seeded, 15% held out) and train a small CNN classifier on the train split.
2. Its accuracy on the held-out real sprites is the ceiling: how often a *real* sprite of class k is
   called k.
3. Generate --per-class sprites for each class with the runtime API (SpriteGenerator, ONNX Runtime,
   no torch) conditioned on that class, for each sampler:guidance of --runs, and report how
   often the classifier assigns them to the requested class. Chance is 1 / n_classes.

--sheets DIR also writes the evaluated sprites as one sheet per class and run
({class}_ddpm.png, {class}_ddim25.png, {class}_ddim25_w2.png for guidance 2; 8 per row, scale 4).
The classifier needs torch (the export extra); generation does not.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ddpm_edge.ddpm_ref.dataset import load_dataset, split_indices
from ddpm_edge.runtime.api import SpriteGenerator
from ddpm_edge.runtime.assets.images import make_sheet

ROOT = Path(__file__).resolve().parents[1]


class SpriteClassifier(nn.Module):
    """A small CNN: [N,3,16,16] in [-1,1] → logits [N,K]."""

    def __init__(self, n_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),      # 8x8
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3))
        self.head = nn.Linear(4 * width, n_classes)

    def forward(self, x):
        return self.head(self.features(x))


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,C] → float32 [N,C,H,W] in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def train_classifier(images: np.ndarray, index: np.ndarray, n_classes: int, epochs: int = 60, seed: int = 0) -> nn.Module:
    """Adam with cosine decay, horizontal flips; images uint8 [N,H,W,C], index int [N]."""
    torch.manual_seed(seed)
    model = SpriteClassifier(n_classes)
    x, y = to_input(images), torch.from_numpy(index).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for b in range(0, len(x), 64):
            batch = order[b:b + 64]
            xb = x[batch]
            flip = torch.rand(len(batch), generator=generator) < 0.5
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
            loss = nn.functional.cross_entropy(model(xb), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray) -> np.ndarray:
    return model(to_input(images)).argmax(1).numpy()


def generate_per_class(generator: SpriteGenerator, per_class: int, sampler: str, steps, guidance: float,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """per_class sprites of each class → (uint8 [K·per_class, H, W, C], requested class [K·per_class])."""
    k = generator.spec.n_cfeat
    context = np.repeat(np.eye(k, dtype=np.float32), per_class, axis=0)   # [K·per_class, K]
    sprites = generator.generate(len(context), context=context, seed=seed, sampler=sampler, steps=steps,
                                 guidance=guidance)
    return sprites, context.argmax(1)


def write_sheets(sprites: np.ndarray, wanted: np.ndarray, names, out: Path, tag: str) -> list[Path]:
    """One sheet per class of the evaluated sprites (8 per row, scale 4): {class}_{tag}.png."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k, name in enumerate(names):
        path = out / f"{name}_{tag}.png"
        make_sheet(sprites[wanted == k], cols=8, scale=4, padding=2, background=(255, 255, 255)).save(path)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="unet.onnx (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=ROOT / "ddpm_ref" / "data")
    parser.add_argument("--per-class", type=int, default=32)
    parser.add_argument("--runs", default="ddpm:0,ddim25:0,ddim25:2",
                        help="comma-separated sampler:guidance runs (ddpm, ddimS with S steps)")
    parser.add_argument("--held-out", type=float, default=0.15)
    parser.add_argument("--classifier-epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sheets", type=Path, default=None, help="also write per-class sample sheets here")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_dataset(args.data)
    index = data.class_index()
    train, held = split_indices(len(data.images), args.held_out, seed=args.seed)
    started = time.monotonic()
    classifier = train_classifier(data.images[train], index[train], len(data.class_names), args.classifier_epochs, args.seed)
    real = float((predict(classifier, data.images[held]) == index[held]).mean())
    print(f"classifier: trained on {len(train)} sprites in {time.monotonic() - started:.0f}s; "
          f"held-out real accuracy {real:.3f} ({len(held)} sprites, chance {1 / len(data.class_names):.3f})", flush=True)

    generator = SpriteGenerator.load(args.model)
    if tuple(generator.spec.context_names) != tuple(data.class_names):
        raise SystemExit(f"model classes {generator.spec.context_names} differ from the dataset's {data.class_names}")
    shown = args.data.resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    results = {"dataset": str(shown), "dataset_sha256": data.sha256, "model_sha256": generator.model_sha256,
               "held_out": len(held), "train": len(train), "real_held_out_accuracy": real, "generated": [],
               "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.python_version()}"}
    runs = [tuple(r.split(":")) for r in args.runs.split(",")]                 # ("ddpm", "0"), ("ddim25", "2")
    for sampler_name, weight in runs:
        sampler, steps, guidance = sampler_name[:4], (int(sampler_name[4:]) if sampler_name[4:] else None), float(weight)
        started = time.monotonic()
        sprites, wanted = generate_per_class(generator, args.per_class, sampler, steps, guidance, args.seed)
        got = predict(classifier, sprites)
        per_class = {name: float((got[wanted == k] == k).mean()) for k, name in enumerate(data.class_names)}
        row = {"sampler": sampler if steps is None else f"{sampler}-{steps}", "guidance": guidance,
               "n": len(sprites), "accuracy": float((got == wanted).mean()), "per_class": per_class,
               "seconds": round(time.monotonic() - started, 1)}
        results["generated"].append(row)
        if args.sheets is not None:
            tag = row["sampler"].replace("-", "") + ("" if guidance == 0 else f"_w{guidance:g}")
            for path in write_sheets(sprites, wanted, data.class_names, args.sheets, tag):
                print(f"wrote {path}")
        print(f"{row['sampler']:8s} guidance {guidance:g}: {row['accuracy']:.3f} of {len(sprites)} generated "
              f"sprites classified as requested ({', '.join(f'{k} {v:.2f}' for k, v in per_class.items())}; "
              f"{row['seconds']}s)", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
