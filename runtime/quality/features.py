"""Run the shipped sprite classifier (weights/sprite_features.onnx, made by ddpm_ref/classifier.py):
uint8 sprites [N, H, W, C] → logits [N, K] and penultimate-layer features [N, D]. ONNX Runtime only."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..backends.ort import open_session
from ..errors import DdpmEdgeError
from ..files import HashedFile

METADATA_KEY = "ddpm-edge-classifier"
CHUNK = 1024   # rows per session run: bounded memory, and results independent of N


def default_classifier_path() -> Path:
    return Path(__file__).resolve().parents[2] / "weights" / "sprite_features.onnx"


class SpriteFeatures(HashedFile):
    """`logits, features = SpriteFeatures()(sprites)`; `.metadata` is what ddpm_ref/classifier.py recorded
    (dataset_sha256, class_names, held-out split and accuracy)."""

    def __init__(self, path: str | os.PathLike | None = None, threads: int | None = None):
        self.path = Path(path) if path is not None else default_classifier_path()
        if not self.path.is_file():
            raise DdpmEdgeError(f"sprite classifier not found: {self.path} "
                                "(python -m ddpm_edge.ddpm_ref.classifier makes it)")
        self.session = open_session(self.path, ["CPUExecutionProvider"], self.path, threads)
        names = {o.name for o in self.session.get_outputs()}
        if {"logits", "features"} - names or [i.name for i in self.session.get_inputs()] != ["sprites"]:
            raise DdpmEdgeError(f"{self.path} is not a sprite classifier: expected input sprites and "
                                f"outputs logits, features")
        try:
            self.metadata = json.loads(self.session.get_modelmeta().custom_metadata_map[METADATA_KEY])
            self.class_names = tuple(self.metadata["class_names"])
            self.image_shape = tuple(self.metadata["image_shape"])       # (H, W, C)
        except (KeyError, ValueError, TypeError):
            raise DdpmEdgeError(f"{self.path} lacks its {METADATA_KEY} metadata") from None

    def __call__(self, sprites: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [N, H, W, C] → (logits float32 [N, K], features float32 [N, D])."""
        sprites = np.asarray(sprites)
        if sprites.dtype != np.uint8 or sprites.ndim != 4 or sprites.shape[1:] != self.image_shape:
            raise DdpmEdgeError(f"sprites must be uint8 [N, {', '.join(map(str, self.image_shape))}], "
                                f"got {sprites.dtype} {tuple(sprites.shape)}")
        if len(sprites) == 0:
            raise DdpmEdgeError("no sprites to measure")
        logits, features = [], []
        for start in range(0, len(sprites), CHUNK):
            chunk = np.ascontiguousarray(sprites[start:start + CHUNK])
            out = self.session.run(["logits", "features"], {"sprites": chunk})
            logits.append(out[0])
            features.append(out[1])
        return np.concatenate(logits).astype(np.float32), np.concatenate(features).astype(np.float64)
