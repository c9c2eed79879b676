"""From samples to pixels: [-1, 1] floats → uint8 images → a sprite-sheet grid."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image


def to_uint8(samples: np.ndarray) -> np.ndarray:
    """[N,C,H,W] float in about [-1, 1] → [N,H,W,C] uint8 (clipped to [-1, 1], then mapped to 0–255)."""
    x = np.clip(samples, -1.0, 1.0)
    x = np.rint((x + 1.0) * 127.5).astype(np.uint8)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a sheet: `cols` if given, else the smallest square-ish grid."""
    cols = max(1, min(n, cols if cols else math.ceil(math.sqrt(n))))
    return math.ceil(n / cols), cols


def make_sheet(images: np.ndarray, cols: int | None = None, scale: int = 1, padding: int = 0,
               background: tuple[int, ...] | None = None) -> Image.Image:
    """[N,H,W,C] uint8 (C = 1, 3 or 4) → one PIL image, row-major, each cell scaled by nearest neighbour.

    Cell k sits at x = padding + col·(W·scale + padding), y = padding + row·(H·scale + padding).
    """
    n, h, w, channels = images.shape
    rows, cols = grid_shape(n, cols)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    cell_w, cell_h = w * scale, h * scale
    size = (padding + cols * (cell_w + padding), padding + rows * (cell_h + padding))
    fill = background if background is not None else (0,) * channels
    sheet = Image.new(mode, size, fill if channels > 1 else fill[0])
    for k in range(n):
        row, col = divmod(k, cols)
        tile = Image.fromarray(images[k] if channels > 1 else images[k, :, :, 0], mode)
        if scale != 1:
            tile = tile.resize((cell_w, cell_h), Image.NEAREST)
        sheet.paste(tile, (padding + col * (cell_w + padding), padding + row * (cell_h + padding)))
    return sheet
