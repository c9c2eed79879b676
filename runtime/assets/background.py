"""Background keying: the model draws each sprite on a plain background; find it and key it out.

Per sprite, the background colour is the border's dominant colour: the border pixel with the most
border pixels within `tolerance` of it, averaged (median) over those. Background is what
connects to the border through pixels within `tolerance` of that colour (a 4-connected flood fill), so
interior pixels of a similar colour (eyes, highlights) stay part of the sprite. Opaque specks with no
opaque 8-neighbour (the model's near-background noise) are keyed too. A sprite whose border has no
dominant colour (under MIN_BORDER_SHARE of it near one colour) has no clear background and stays opaque.

Keying algorithms (recorded as `keying` so old records regenerate byte for byte):
    v1  the mask only: background pixels keyed, every other pixel kept as drawn. The outermost sprite
        pixels are blends of sprite and background (the training sprites were downsampled on white), so
        on another background they show a light 1-px halo.
    v2  (default) the mask, then the rim is unmixed: each sprite pixel touching the background and each
        background pixel touching the sprite (8-neighbourhoods) is taken as P = a·F + (1−a)·B, B the
        background colour, F the mean of the sprite's interior pixels within 2 px (for thin parts with no
        interior: the pixel within 2 px farthest from B), a the projection of P−B on F−B (background pixels:
        only when P−B points along F−B and a >= 0.1, else keyed as before); for sprite pixels
        raised to the least alpha that keeps the unmixed colour in [0, 255] (GIMP's colour-to-alpha bound)
        and capped at 1 (pixels darker or more saturated than F stay opaque). The pixel becomes colour
        B + (P−B)/a with alpha a: over B it looks as drawn, over anything else it carries no background.

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
KEYINGS = ("v1", "v2")
DEFAULT_KEYING = "v2"
LEGACY_KEYING = "v1"     # what a record without a `keying` field was keyed with
INTERIOR_RADIUS = 2      # v2: F is averaged over interior pixels within this many pixels
RIM_COSINE = 0.9         # v2: a background rim pixel is a blend only this close to the line from B to F
RIM_MIN_SHARE = 0.1      # v2: ... and at least this much sprite


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


def check_keying(keying) -> str:
    if keying not in KEYINGS:
        raise DdpmEdgeError(f"unknown background keying {keying!r}; choose one of {', '.join(KEYINGS)}")
    return keying


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


def _box_sum(a: np.ndarray, radius: int) -> np.ndarray:
    """[N,H,W,...] summed over the (2r+1)² window around each pixel (zero outside)."""
    h, w = a.shape[1:3]
    padded = np.pad(a, ((0, 0), (radius, radius), (radius, radius)) + ((0, 0),) * (a.ndim - 3))
    return sum(padded[:, radius + dy:radius + dy + h, radius + dx:radius + dx + w]
               for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1))


def _farthest_within(pixels: np.ndarray, B: np.ndarray, candidates: np.ndarray, radius: int) -> np.ndarray:
    """[N,H,W,C]: for each pixel, the candidate pixel within `radius` farthest from the background B."""
    n, h, w, c = pixels.shape
    distance = np.where(candidates, ((pixels - B) ** 2).sum(-1), -1.0)
    pad = ((0, 0), (radius, radius), (radius, radius))
    padded_d = np.pad(distance, pad, constant_values=-1.0)
    padded_p = np.pad(pixels, pad + ((0, 0),))
    best_d = np.full((n, h, w), -1.0, np.float32)
    best = np.zeros_like(pixels)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            d = padded_d[:, radius + dy:radius + dy + h, radius + dx:radius + dx + w]
            better = d > best_d
            best_d = np.where(better, d, best_d)
            best = np.where(better[..., None], padded_p[:, radius + dy:radius + dy + h, radius + dx:radius + dx + w],
                            best)
    return best


def unmix_edges(images: np.ndarray, mask: np.ndarray, tolerance: int = DEFAULT_TOLERANCE):
    """Keying v2's edge step: [N,H,W,C] uint8 + background mask → alpha [N,H,W] float32 in [0,1] and colour
    [N,H,W,C] float32 (the unmixed colour where alpha > 0). Unmixed: the sprite's pixels touching the
    background and the background pixels touching the sprite (8-neighbourhoods); elsewhere alpha is 1
    inside, 0 on the background."""
    pixels = images.astype(np.float32)
    B = border_colour(images, tolerance).astype(np.float32)[:, None, None, :]      # [N,1,1,C]
    opaque = ~mask
    edge = opaque & (_box_sum(mask.astype(np.uint8), 1) > 0)                        # sprite pixels at the rim
    ring = mask & (_box_sum(opaque.astype(np.uint8), 1) > 0)                        # background pixels at the rim
    interior = (opaque & ~edge).astype(np.float32)
    count = _box_sum(interior, INTERIOR_RADIUS)                                     # [N,H,W]
    F = np.where((count > 0)[..., None],
                 _box_sum(pixels * interior[..., None], INTERIOR_RADIUS) / np.maximum(count, 1)[..., None],
                 _farthest_within(pixels, B, opaque, INTERIOR_RADIUS))             # thin parts: strongest colour
    d, p = F - B, pixels - B
    spread = (d * d).sum(-1)
    projected = (p * d).sum(-1) / np.maximum(spread, 1e-6)
    # the least alpha with B + (P−B)/a inside [0, 255] in every channel
    room = np.where(p > 0, 255.0 - B, B)
    gamut = np.where(room > 0, np.abs(p) / np.maximum(room, 1e-6), (np.abs(p) > 0) * 1.0).max(-1)
    alpha = np.clip(np.maximum(projected, gamut), 0.0, 1.0)
    alpha = np.where(edge, np.where(spread > 0, alpha, 1.0), opaque * 1.0)
    # a background pixel at the rim keeps the sprite's share of it when it lies on the blend line from B
    # to a sprite colour clearly unlike B, and the share is not noise (background noise is neither)
    along = (p * d).sum(-1) / np.maximum(np.sqrt(spread * (p * p).sum(-1)), 1e-6)    # cos(P−B, F−B)
    blend = ring & (spread > (2 * tolerance) ** 2) & (along >= RIM_COSINE) & (projected >= RIM_MIN_SHARE)
    alpha = np.where(blend, np.clip(projected, 0.0, 1.0), alpha).astype(np.float32)
    colour = np.where(alpha[..., None] > 0, B + p / np.maximum(alpha, 1e-6)[..., None], 0.0)
    return alpha, np.clip(colour, 0, 255).astype(np.float32)


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
                     tolerance: int = DEFAULT_TOLERANCE, keying: str = DEFAULT_KEYING) -> np.ndarray:
    """Key the background of [N,H,W,C] uint8 sprites: None keeps them; "transparent" → [N,H,W,C+1]
    (RGBA; grey sprites become RGBA too) with alpha 0 and colour 0 on the background; "#rrggbb" → the
    background replaced by that colour, same channels. `keying` v2 (default) also unmixes the edge pixels
    (partial alpha, no halo); v1 is the algorithm records without a `keying` field were made with."""
    background = parse_background(background)
    keying = check_keying(keying)
    if background is None:
        return images
    mask = background_mask(images, tolerance)
    if images.shape[-1] == 1 and background == TRANSPARENT:
        images = np.repeat(images, 3, axis=-1)
    mode = "L" if images.shape[-1] == 1 else "RGB"
    if keying == "v2":
        alpha, colour = unmix_edges(images, mask, tolerance)
        if background == TRANSPARENT:
            alpha8 = np.round(alpha * 255).astype(np.uint8)
            rgb = np.where(alpha8[..., None] > 0, np.round(colour), 0).astype(np.uint8)
            return np.concatenate([rgb, alpha8[..., None]], axis=-1)
        new = np.array(ImageColor.getcolor(background, mode), dtype=np.float32).reshape(-1)
        out = alpha[..., None] * colour + (1 - alpha[..., None]) * new
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    if background == TRANSPARENT:
        alpha = np.where(mask, 0, 255).astype(np.uint8)[..., None]
        return np.concatenate([np.where(mask[..., None], 0, images).astype(np.uint8), alpha], axis=-1)
    colour = np.array(ImageColor.getcolor(background, mode), dtype=np.uint8).reshape(-1)
    return np.where(mask[..., None], colour, images).astype(np.uint8)
