"""Halo-free background keying (v2): sprites drawn with anti-aliased edges on white, as the training
sprites were, keyed to transparent and drawn over a dark background show no light fringe; over the
white they were drawn on they look as before. v1 (what records without a `keying` field mean) stays."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from ddpm_edge.runtime.assets.background import apply_background, background_mask
from ddpm_edge.runtime.assets.records import downgrade
from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.params import GenerationParams

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
DARK = np.array([20, 20, 30], np.float32)


def drawn_sprites() -> tuple[np.ndarray, np.ndarray]:
    """[N,16,16,3] uint8: shapes drawn at 8x on white and box-downsampled (anti-aliased edges), with the
    colour each shape was drawn in [N,3]."""
    shapes = [("ellipse", (200, 30, 30)), ("ellipse", (250, 200, 40)), ("rectangle", (40, 60, 200)),
              ("polygon", (30, 140, 60)), ("ellipse", (120, 70, 40))]
    sprites = []
    for kind, colour in shapes:
        big = Image.new("RGB", (128, 128), "white")
        draw = ImageDraw.Draw(big)
        if kind == "polygon":
            draw.polygon([(64, 10), (118, 110), (12, 100)], fill=colour)
        else:
            getattr(draw, kind)((19, 27, 109, 101), fill=colour)
        sprites.append(np.asarray(big.resize((16, 16), Image.Resampling.BOX)))
    return np.stack(sprites), np.array([c for _, c in shapes], np.float32)


def over(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:].astype(np.float32) / 255
    return rgba[..., :3].astype(np.float32) * alpha + background * (1 - alpha)


def light_fringe(rgba: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """[N,H,W] bool: visible pixels that, over a dark background, are lighter than the shape's own colour
    over it (the halo) by more than 8 levels."""
    luma = over(rgba, DARK) @ LUMA
    limit = colours @ LUMA + 8
    return (rgba[..., 3] > 0) & (luma > limit[:, None, None])


def test_v1_leaves_a_light_halo_v2_none():
    sprites, colours = drawn_sprites()
    v1 = apply_background(sprites, "transparent", keying="v1")
    v2 = apply_background(sprites, "transparent", keying="v2")
    visible = (v1[..., 3] > 0).sum()
    assert light_fringe(v1, colours).sum() > 0.1 * visible      # the bug: edge blends with white stay opaque
    assert light_fringe(v2, colours).sum() == 0
    assert ((v2[..., 3] > 0) & (v2[..., 3] < 255)).any()         # edges became partly transparent


def test_v2_looks_as_drawn_on_its_own_background():
    sprites, _ = drawn_sprites()
    v2 = apply_background(sprites, "transparent")                 # v2 is the default
    white = np.full(3, 255, np.float32)
    shown = v2[..., 3] > 0
    assert np.abs(over(v2, white) - sprites)[shown].max() <= 1.0          # the rim too, with partial alpha
    assert np.abs(sprites.astype(int) - 255)[~shown].max() <= 32           # keyed: within the tolerance of white
    mask = background_mask(sprites)
    interior = ~mask & (v2[..., 3] == 255)
    np.testing.assert_array_equal(v2[..., :3][interior], sprites[interior])   # opaque pixels untouched
    assert (v2[..., 3][mask] < 128).all() and (v2[..., 3][mask] == 0).mean() > 0.8   # only the rim keeps a share


def test_v2_colour_replacement_blends_edges():
    sprites, colours = drawn_sprites()
    black = apply_background(sprites, "#141e1e")
    v1 = apply_background(sprites, "#141e1e", keying="v1")
    rgba = np.concatenate([black, np.full(black.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
    assert light_fringe(rgba, colours).sum() == 0
    rgba_v1 = np.concatenate([v1, np.full(v1.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
    assert light_fringe(rgba_v1, colours).sum() > 0


def test_unknown_keying_refused():
    with pytest.raises(DdpmEdgeError, match="keying"):
        apply_background(drawn_sprites()[0], "transparent", keying="v3")
    with pytest.raises(DdpmEdgeError, match="keying"):
        GenerationParams(keying="v0")


def test_records_without_keying_mean_v1():
    base = GenerationParams(n=2, seed=1, background="transparent", rng="pcg64").as_dict()   # /1 knew only pcg64
    assert base["keying"] == "v2"
    old = {k: v for k, v in base.items() if k != "keying"}
    assert GenerationParams.from_record(old).keying == "v1"
    common = {**base, "model": "m.onnx", "model_sha256": "0" * 64, "version": "x", "cols": 2, "scale": 4,
              "padding": 0, "backend": "onnxruntime", "precision": "fp32"}
    assert downgrade({**common, "keying": "v2"}) is None             # a v2-keyed sheet cannot pass as /1
    assert "keying" not in downgrade({**common, "keying": "v1"})     # a /1 sheet regenerated stays /1
    assert downgrade({**common, "keying": "v2", "background": None}) is not None   # nothing keyed
