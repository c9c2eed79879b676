"""The sprite classifier behind the quality yardstick: a small CNN trained on the sprite set, shipped as
ONNX (weights/sprite_features.onnx) so the yardstick (runtime/quality/) runs without torch.

    python -m ddpm_edge.ddpm_ref.classifier [--data ddpm_ref/data] [--out weights/sprite_features.onnx]

Reproducible: a fixed seed drives the (train, held-out) split, the initialisation, batch order and
flips; 2 threads, deterministic algorithms. The ONNX graph takes the sprites as drawn (uint8
[N, H, W, C]) and returns `logits` [N, K] and `features` [N, D], the penultimate layer (after global
average pooling) on which the Fréchet distance, KID and precision/recall are computed — the role
Inception-v3's pool3 plays for FID (Heusel et al. 2017), here with a network that knows sprites.
Its metadata ("ddpm-edge-classifier" JSON) records the dataset sha256, the split, the class names and
the held-out accuracy measured with ONNX Runtime on the exported graph.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ddpm_edge.ddpm_ref.dataset import load_dataset, split_indices
from ddpm_edge.runtime.files import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "weights" / "sprite_features.onnx"
METADATA_KEY = "ddpm-edge-classifier"
HELD_OUT, SEED, EPOCHS, THREADS, OPSET = 0.15, 0, 60, 2, 18


class SpriteClassifier(nn.Module):
    """A small CNN: [N,3,16,16] in [-1,1] → logits [N,K]; `features` gives the [N, 4·width] embedding."""

    def __init__(self, n_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),      # 8x8
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())                                                       # [N, 4w]
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(4 * width, n_classes)

    def forward(self, x):
        return self.head(self.dropout(self.features(x)))


class SpriteFeatures(nn.Module):
    """What ships: uint8 sprites [N,H,W,C] → (logits [N,K], features [N,D]); eval mode."""

    def __init__(self, classifier: SpriteClassifier):
        super().__init__()
        self.classifier = classifier.eval()

    def forward(self, sprites):
        x = sprites.permute(0, 3, 1, 2).float() / 127.5 - 1.0        # [N,C,H,W] in [-1, 1]
        features = self.classifier.features(x)
        return self.classifier.head(features), features


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,C] → float32 [N,C,H,W] in [-1, 1] (the same mapping as SpriteFeatures)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def train_classifier(images: np.ndarray, index: np.ndarray, n_classes: int, epochs: int = EPOCHS,
                     seed: int = SEED) -> SpriteClassifier:
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
            flip = torch.rand(len(batch), generator=generator) < 0.5   # sprites are left/right symmetric classes
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


def export_onnx(classifier: SpriteClassifier, image_shape: tuple[int, int, int], metadata: dict) -> bytes:
    """The SpriteFeatures graph (dynamic batch) as serialized ONNX with `metadata` under METADATA_KEY."""
    import onnx

    example = torch.zeros((2, *image_shape), dtype=torch.uint8)
    batch = torch.export.Dim("n", min=1, max=1 << 20)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(SpriteFeatures(classifier), (example,), None, dynamo=True,
                                    input_names=["sprites"], output_names=["logits", "features"],
                                    opset_version=OPSET, dynamic_shapes={"sprites": {0: batch}},
                                    external_data=False)
    proto = program.model_proto
    for value in list(proto.graph.input) + list(proto.graph.output):   # one name for the batch axis
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "n"
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    proto.producer_name, proto.producer_version = "ddpm-edge", "classifier"
    proto.doc_string = "sprite classifier: uint8 sprites [n,H,W,C] -> logits [n,K], features [n,D]"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def onnx_accuracy(model_bytes: bytes, images: np.ndarray, index: np.ndarray) -> float:
    """Accuracy of the exported graph under ONNX Runtime (what the yardstick will run)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"sprites": np.ascontiguousarray(images, dtype=np.uint8)})[0]
    return float((logits.argmax(1) == index).mean())


def build(data_path: str | Path = ROOT / "ddpm_ref" / "data", out: str | Path = DEFAULT_OUT,
          held_out: float = HELD_OUT, seed: int = SEED, epochs: int = EPOCHS) -> dict:
    """Train, export, measure; write `out` atomically; return the metadata."""
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    data = load_dataset(data_path)
    index = data.class_index()
    train, held = split_indices(len(data.images), held_out, seed=seed)
    started = time.monotonic()
    classifier = train_classifier(data.images[train], index[train], len(data.class_names), epochs, seed)
    metadata = {"format": "ddpm-edge-classifier/1", "dataset_sha256": data.sha256,
                "class_names": list(data.class_names), "image_shape": list(data.images.shape[1:]),
                "held_out_fraction": held_out, "split_seed": seed, "train_seed": seed, "epochs": epochs,
                "train": len(train), "held_out": len(held), "feature_dim": classifier.head.in_features,
                "torch": torch.__version__, "builder": "python -m ddpm_edge.ddpm_ref.classifier"}
    draft = export_onnx(classifier, data.images.shape[1:], metadata)
    metadata["held_out_accuracy"] = onnx_accuracy(draft, data.images[held], index[held])
    metadata["train_accuracy"] = onnx_accuracy(draft, data.images[train], index[train])
    metadata["seconds"] = round(time.monotonic() - started, 1)
    atomic_write_bytes(Path(out), export_onnx(classifier, data.images.shape[1:], metadata))
    return metadata


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the yardstick's sprite classifier and export it to ONNX.")
    parser.add_argument("--data", type=Path, default=ROOT / "ddpm_ref" / "data")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--held-out", type=float, default=HELD_OUT)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    meta = build(args.data, args.out, args.held_out, args.seed, args.epochs)
    print(f"wrote {args.out}: held-out accuracy {meta['held_out_accuracy']:.3f} ({meta['held_out']} sprites, "
          f"chance {1 / len(meta['class_names']):.3f}), train {meta['train_accuracy']:.3f}, {meta['seconds']}s")


if __name__ == "__main__":
    from ddpm_edge.runtime.errors import DdpmEdgeError

    try:
        main()
    except DdpmEdgeError as e:
        raise SystemExit(f"error: {e}") from None
