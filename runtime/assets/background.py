"""Background keying: the model draws each sprite on a plain background; find it and key it out.

Per sprite, the background colour is the border's dominant colour: the border pixel with the most
border pixels within `tolerance` of it, averaged (median) over those. Background is what
connects to the border through pixels within `tolerance` of that colour (a 4-connected flood fill), so
interior pixels of a similar colour (eyes, highlights) stay part of the sprite. Opaque specks with no
opaque 8-neighbour (the model's near-background noise) are keyed too. A sprite whose border has no
dominant colour (under MIN_BORDER_SHARE of it near one colour) has no clear background and stays opaque.

    background_mask(images [N,H,W,C] uint8)            → [N,H,W] bool, True = background
    apply_background(images, "transparent" | "#rrggbb") → [N,H,W,4] or [N,H,W,C] uint8
"""
from __future__ import annotations

import numpy as np
from PIL import ImageColor

from ..errors import DdpmEdgeError

TRANSPARENT = "transparent"
DEFAULT_TOLERANCE = 32
CHUNK = 256              # sprites per pairwise border comparison ([CHUNK, B, B, C] int16)
MIN_BORDER_SHARE = 0.25  # at least this share of the border must match the estimated background


def parse_background(text: str | None) -> str | None:
    """None / "keep" → None (sprites as drawn); "transparent"; a colour name or #RRGGBB → "#rrggbb"."""
    if text is not None and not isinstance(text, str):
        raise DdpmEdgeError(f"background must be keep, transparent or a colour name/#RRGGBB, got {text!r:.80}")
    if text is None or text.strip().lower() in ("", "keep", "none"):
        return None
    text = text.strip().lower()
    if text == TRANSPARENT:
        return TRANSPARENT
    try:
        r, g, b = ImageColor.getrgb(text)[:3]
    except ValueError:
        raise DdpmEdgeError(f"unknown background colour {text!r}: use a colour name (white), #RRGGBB, "
                            "transparent, or keep") from None
    return f"#{r:02x}{g:02x}{b:02x}"


def check_tolerance(tolerance) -> int:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or not 0 <= tolerance <= 255:
        raise DdpmEdgeError(f"background tolerance must be an integer from 0 to 255, got {tolerance!r}")
    return int(tolerance)


def _border(a: np.ndarray) -> np.ndarray:
    """[N,H,W,...] → the border pixels [N, 2H+2W-4, ...] (top row, bottom row, left and right columns)."""
    return np.concatenate([a[:, 0], a[:, -1], a[:, 1:-1, 0], a[:, 1:-1, -1]], axis=1)


def border_colour(images: np.ndarray, tolerance: int = DEFAULT_TOLERANCE) -> np.ndarray:
    """[N,H,W,C] uint8 → [N,C] int16: each sprite's dominant border colour."""
    if len(images) > CHUNK:
        return np.concatenate([border_colour(images[k:k + CHUNK], tolerance) for k in range(0, len(images), CHUNK)])
    border = _border(images.astype(np.int16))                                        # [N, B, C]
    close = np.abs(border[:, :, None, :] - border[:, None, :, :]).max(axis=-1) <= tolerance   # [N, B, B]
    best = close.sum(axis=2).argmax(axis=1)                                           # [N]
    members = close[np.arange(len(border)), best]                                     # [N, B]
    masked = np.where(members[..., None], border, np.nan)
    return np.nanmedian(masked, axis=1).round().astype(np.int16)


def _grow4(mask: np.ndarray) -> np.ndarray:
    """mask [N,H,W] dilated by its 4-neighbours."""
    out = mask.copy()
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    out[:, :, 1:] |= mask[:, :, :-1]
    out[:, :, :-1] |= mask[:, :, 1:]
    return out


def _opaque_neighbours(opaque: np.ndarray) -> np.ndarray:
    """[N,H,W] bool → [N,H,W] count of opaque 8-neighbours."""
    padded = np.pad(opaque, ((0, 0), (1, 1), (1, 1))).astype(np.uint8)
    h, w = opaque.shape[1:]
    return sum(padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def background_mask(images: np.ndarray, tolerance: int = DEFAULT_TOLERANCE) -> np.ndarray:
    """[N,H,W,C] uint8 → [N,H,W] bool, True where the pixel is background."""
    tolerance = check_tolerance(tolerance)
    pixels = images.astype(np.int16)
    colour = border_colour(images, tolerance)                                     # [N, C]
    near = np.abs(pixels - colour[:, None, None, :]).max(axis=-1) <= tolerance    # [N, H, W]
    on_border = np.zeros(near.shape[1:], dtype=bool)
    on_border[[0, -1], :] = True
    on_border[:, [0, -1]] = True
    mask = near & on_border
    while True:  # flood fill from the border through near-background pixels
        grown = _grow4(mask) & near
        if np.array_equal(grown, mask):
            break
        mask = grown
    mask |= ~mask & (_opaque_neighbours(~mask) == 0)                              # isolated specks
    clear = _border(near).mean(axis=1) >= MIN_BORDER_SHARE                        # [N]
    return mask & clear[:, None, None]


def apply_background(images: np.ndarray, background: str | None,
                     tolerance: int = DEFAULT_TOLERANCE) -> np.ndarray:
    """Key the background of [N,H,W,C] uint8 sprites: None keeps them; "transparent" → [N,H,W,C+1]
    (RGBA; grey sprites become RGBA too) with alpha 0 and colour 0 on the background; "#rrggbb" → the
    background replaced by that colour, same channels."""
    background = parse_background(background)
    if background is None:
        return images
    mask = background_mask(images, tolerance)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1) if background == TRANSPARENT else images
    if background == TRANSPARENT:
        alpha = np.where(mask, 0, 255).astype(np.uint8)[..., None]
        return np.concatenate([np.where(mask[..., None], 0, images).astype(np.uint8), alpha], axis=-1)
    mode = "L" if images.shape[-1] == 1 else "RGB"
    colour = np.array(ImageColor.getcolor(background, mode), dtype=np.uint8).reshape(-1)
    return np.where(mask[..., None], colour, images).astype(np.uint8)
