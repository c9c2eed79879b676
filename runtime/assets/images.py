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


MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def sheet_geometry(n: int, height: int, width: int, cols: int | None = None, scale: int = 1,
                   padding: int = 0) -> tuple[tuple[int, int], list[tuple[int, int, int, int]]]:
    """The sheet's (width, height) and each of n cells' (x, y, w, h), row-major: cell k sits at
    x = padding + col·(W·scale + padding), y = padding + row·(H·scale + padding). Sheets and atlases
    both come from here, so an atlas always matches its sheet."""
    rows, cols = grid_shape(n, cols)
    cell_w, cell_h = width * scale, height * scale
    size = (padding + cols * (cell_w + padding), padding + rows * (cell_h + padding))
    cells = [(padding + (k % cols) * (cell_w + padding), padding + (k // cols) * (cell_h + padding), cell_w, cell_h)
             for k in range(n)]
    return size, cells


def to_image(sprite: np.ndarray, scale: int = 1) -> Image.Image:
    """[H,W,C] uint8 (C = 1, 3 or 4) → a PIL image, scaled by nearest neighbour."""
    mode = MODES[sprite.shape[-1]]
    image = Image.fromarray(sprite[..., 0] if mode == "L" else sprite, mode)
    return image if scale == 1 else image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def make_sheet(images: np.ndarray, cols: int | None = None, scale: int = 1, padding: int = 0,
               background: tuple[int, ...] | None = None) -> Image.Image:
    """[N,H,W,C] uint8 (C = 1, 3 or 4) → one PIL image, cells as `sheet_geometry` places them."""
    sheet = sheet_array(images, cols, scale, padding, background)
    return Image.fromarray(sheet[..., 0] if sheet.shape[-1] == 1 else sheet, MODES[sheet.shape[-1]])


def sheet_array(images: np.ndarray, cols: int | None = None, scale: int = 1, padding: int = 0,
                background: tuple[int, ...] | None = None) -> np.ndarray:
    """[N,H,W,C] uint8 → the sheet [H', W', C] (any C), in NumPy: nearest-neighbour scale, then the cells
    of `sheet_geometry` in one reshape (no per-sprite paste)."""
    n, h, w, channels = images.shape
    rows, cols = grid_shape(n, cols)
    fill = np.asarray(background if background is not None else (0,) * channels, dtype=np.uint8)
    cells = np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)           # [N, h·s, w·s, C] nearest
    hs, ws = h * scale, w * scale
    # a [rows, cell_h + padding, cols, cell_w + padding, C] block of padded cells: the layout of sheet_geometry
    block = np.empty((rows, hs + padding, cols, ws + padding, channels), dtype=np.uint8)
    block[...] = fill
    placed = np.concatenate([cells, np.broadcast_to(fill, (rows * cols - n, hs, ws, channels))]) if rows * cols > n else cells
    block[:, :hs, :, :ws] = placed.reshape(rows, cols, hs, ws, channels).transpose(0, 2, 1, 3, 4)
    sheet = np.empty((padding + rows * (hs + padding), padding + cols * (ws + padding), channels), dtype=np.uint8)
    sheet[:padding] = fill
    sheet[:, :padding] = fill
    sheet[padding:, padding:] = block.reshape(rows * (hs + padding), cols * (ws + padding), channels)
    return sheet
