"""Output writers on synthetic sprites: background keying, atlas layout, animations, PNG records,
and all-or-nothing writes. No model needed."""
import json

import numpy as np
import pytest
from PIL import Image, ImageSequence

from ddpm_edge.runtime.assets import outputs
from ddpm_edge.runtime.assets.background import apply_background, background_mask, parse_background
from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.assets.outputs import (Batch, SheetLayout, Targets, atlas_dict, save_animation, save_atlas,
                                       save_each, save_sheet, sprite_names, write_outputs)
from ddpm_edge.runtime.params import GenerationParams
from ddpm_edge.runtime.assets.records import read_record

BG = np.array([205, 225, 240])


def synthetic_sprite(rng, noise=8) -> tuple[np.ndarray, np.ndarray]:
    """A 16x16 sprite on a noisy light-blue background: a dark ring whose enclosed 'eye' has the
    background's colour, plus a single-pixel speck in the background. → (image, expected sprite mask)."""
    image = np.clip(BG + rng.integers(-noise, noise + 1, size=(16, 16, 3)), 0, 255)
    yy, xx = np.mgrid[:16, :16]
    r2 = (yy - 8) ** 2 + (xx - 8) ** 2
    body = r2 <= 25
    image[body] = [90, 40, 30]
    eye = r2 <= 2                                # interior, background-coloured: must stay opaque
    image[eye] = BG + 3
    image[1, 13] = [20, 200, 20]                 # an isolated speck: keyed with the background
    return image.astype(np.uint8), body


def test_transparency_keeps_sprite_and_removes_background(rng):
    images, sprite = zip(*(synthetic_sprite(rng) for _ in range(3)))
    images = np.stack(images)                                            # [3,16,16,3]
    keyed = apply_background(images, "transparent")
    assert keyed.shape == (3, 16, 16, 4) and keyed.dtype == np.uint8
    alpha = keyed[..., 3]
    np.testing.assert_array_equal(alpha > 0, np.stack(sprite))          # eye kept, speck and background gone
    np.testing.assert_array_equal(keyed[..., :3][alpha > 0], images[alpha > 0])
    assert (keyed[alpha == 0] == 0).all()


def test_colour_background_replaces_only_the_background(rng):
    image, sprite = synthetic_sprite(rng)
    out = apply_background(image[None], "#ff00ff")[0]
    assert out.shape == (16, 16, 3)
    assert (out[~sprite] == [255, 0, 255]).all()
    np.testing.assert_array_equal(out[sprite], image[sprite])
    np.testing.assert_array_equal(apply_background(image[None], None)[0], image)


def test_sprite_touching_the_border_and_one_without_background(rng):
    image, sprite = synthetic_sprite(rng)
    image[0:3, 6:10] = [90, 40, 30]                                      # body reaches the top edge
    sprite = sprite.copy()
    sprite[0:3, 6:10] = True
    np.testing.assert_array_equal(~background_mask(image[None])[0], sprite)
    wide = np.clip(BG + rng.integers(-8, 9, size=(16, 16, 3)), 0, 255).astype(np.uint8)
    wide[:, :10] = rng.integers(0, 120, size=(16, 10, 3))   # a many-coloured sprite over half the border
    np.testing.assert_array_equal(background_mask(wide[None])[0][:, 10:], True)
    np.testing.assert_array_equal(background_mask(wide[None])[0][:, :10], False)
    busy = rng.integers(0, 256, size=(1, 16, 16, 3), dtype=np.uint8)     # no plain background at all
    assert not background_mask(busy).any()


@pytest.mark.parametrize("text,expected", [("white", "#ffffff"), ("#00FF80", "#00ff80"), ("Transparent", "transparent"),
                                           ("keep", None), (None, None)])
def test_parse_background(text, expected):
    assert parse_background(text) == expected


@pytest.mark.parametrize("bad", ["blurple", "#12345", "rgb(1,2)"])
def test_unknown_colour(bad):
    with pytest.raises(DdpmEdgeError, match="unknown background colour"):
        parse_background(bad)


def test_sprite_names():
    assert sprite_names(["food", "non-hero", "sprite"]) == ["food_000", "non-hero_001", "sprite_002"]
    assert sprite_names(["a b/c"] * 1001)[1000] == "a-b-c_1000"


def check_atlas(atlas: dict, sheet_size: tuple[int, int], names: list[str], cell: tuple[int, int]) -> None:
    """The TexturePacker JSON (hash) layout: frames by name with frame/rotated/trimmed/spriteSourceSize/
    sourceSize/pivot, meta with app/version/image/format/size/scale."""
    assert set(atlas) == {"frames", "meta"}
    assert list(atlas["frames"]) == names
    for entry in atlas["frames"].values():
        assert set(entry) == {"frame", "rotated", "trimmed", "spriteSourceSize", "sourceSize", "pivot"}
        assert entry["pivot"] == {"x": 0.5, "y": 0.5}
        assert set(entry["frame"]) == {"x", "y", "w", "h"} and all(type(v) is int for v in entry["frame"].values())
        assert (entry["frame"]["w"], entry["frame"]["h"]) == cell
        assert entry["rotated"] is False and entry["trimmed"] is False
        assert entry["spriteSourceSize"] == {"x": 0, "y": 0, "w": cell[0], "h": cell[1]}
        assert entry["sourceSize"] == {"w": cell[0], "h": cell[1]}
    meta = atlas["meta"]
    assert {"app", "version", "image", "format", "size", "scale"} <= set(meta)
    assert meta["size"] == {"w": sheet_size[0], "h": sheet_size[1]} and meta["scale"] == "1"


def coverage(atlas: dict) -> np.ndarray:
    size = atlas["meta"]["size"]
    count = np.zeros((size["h"], size["w"]), dtype=int)
    for entry in atlas["frames"].values():
        f = entry["frame"]
        assert f["x"] >= 0 and f["y"] >= 0 and f["x"] + f["w"] <= size["w"] and f["y"] + f["h"] <= size["h"]
        count[f["y"]:f["y"] + f["h"], f["x"]:f["x"] + f["w"]] += 1
    return count


def test_atlas_rectangles_tile_the_sheet(rng, tmp_path):
    sprites = rng.integers(0, 256, size=(6, 16, 16, 4), dtype=np.uint8)
    names = sprite_names(["food"] * 6)
    layout = SheetLayout(cols=3, scale=2)
    sheet = save_sheet(tmp_path / "s.png", sprites, layout)
    atlas_path = save_atlas(tmp_path / "s.json", names, (16, 16), layout, "s.png")
    atlas = json.loads(atlas_path.read_text())
    image = Image.open(sheet)
    check_atlas(atlas, image.size, [f"s/{name}" for name in names], (32, 32))   # prefixed by the sheet's stem
    assert atlas["meta"]["image"] == "s.png"
    assert (coverage(atlas) == 1).all()                                  # exact tiling: no gaps, no overlap
    for k, entry in enumerate(atlas["frames"].values()):                 # each rectangle holds its sprite
        f = entry["frame"]
        crop = image.crop((f["x"], f["y"], f["x"] + f["w"], f["y"] + f["h"]))
        np.testing.assert_array_equal(np.asarray(crop), sprites[k].repeat(2, 0).repeat(2, 1))


def test_atlas_with_padding_and_a_partial_row(rng):
    layout = SheetLayout(cols=3, scale=1, padding=2)
    atlas = atlas_dict(sprite_names(["a"] * 5), (16, 16), layout, "x.png")
    check_atlas(atlas, (2 + 3 * 18, 2 + 2 * 18), sprite_names(["a"] * 5), (16, 16))
    count = coverage(atlas)
    assert count.max() == 1 and count.sum() == 5 * 16 * 16
    assert atlas["frames"]["a_004"]["frame"] == {"x": 20, "y": 20, "w": 16, "h": 16}


def test_layout_validation():
    with pytest.raises(DdpmEdgeError, match="scale"):
        SheetLayout(scale=0)
    with pytest.raises(DdpmEdgeError, match="cols"):
        SheetLayout(cols=0)
    with pytest.raises(DdpmEdgeError, match="padding"):
        SheetLayout(padding=-1)


@pytest.mark.parametrize("suffix", [".gif", ".png"])
@pytest.mark.parametrize("channels", [3, 4])
def test_animation_frames_and_final_frame(rng, tmp_path, suffix, channels):
    frames = [rng.integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8) for _ in range(5)]
    final = rng.integers(0, 4, size=(4, 16, 16, channels), dtype=np.uint8) * 85   # 64 colours: GIF is exact
    if channels == 4:
        final[..., 3] = np.where(final[..., 3] >= 128, 255, 0)
    layout = SheetLayout(cols=2, scale=3, padding=1)
    fill = (0, 0, 0, 0) if channels == 4 else None
    path = save_animation(tmp_path / f"a{suffix}", frames, final, layout, frame_ms=50, fill=fill)
    sheet = save_sheet(tmp_path / "sheet.png", final, layout, fill=fill)
    with Image.open(path) as image:
        assert image.n_frames == len(frames) + 1
        durations = []
        for frame in ImageSequence.Iterator(image):
            durations.append(frame.info.get("duration"))
            last = frame.convert("RGBA")
    expected = np.asarray(Image.open(sheet).convert("RGBA"))
    got = np.asarray(last)
    if channels == 4:                                                    # compare what is visible
        np.testing.assert_array_equal(got[..., 3], expected[..., 3])
        got, expected = got[expected[..., 3] > 0], expected[expected[..., 3] > 0]
    np.testing.assert_array_equal(got, expected)
    assert durations[0] == 50 and durations[-1] == outputs.FINAL_FRAME_MS


def test_gif_with_many_colours_stays_close(rng, tmp_path):
    final = rng.integers(0, 256, size=(9, 16, 16, 3), dtype=np.uint8)  # > 255 colours: quantized
    path = save_animation(tmp_path / "a.gif", [], final, SheetLayout(scale=1))
    with Image.open(path) as image:
        got = np.asarray(image.convert("RGB")).astype(int)
    expected = np.asarray(Image.open(save_sheet(tmp_path / "s.png", final, SheetLayout(scale=1)))).astype(int)
    assert np.abs(got - expected).mean() < 12


def test_png_records_round_trip(rng, tmp_path):
    sprites = rng.integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    record = {"n": 2, "seed": 7, "context": [[1, 0], [0, 1]], "guidance": 0.5}
    sheet = save_sheet(tmp_path / "s.png", sprites, record=record)
    assert read_record(sheet) == {"format": "ddpm-edge-params/2", **record}
    each = save_each(tmp_path / "each", sprites, ["a_0", "b_1"], scale=2, record=record)
    assert [p.name for p in each] == ["a_0.png", "b_1.png"] and Image.open(each[1]).size == (32, 32)
    assert read_record(each[1])["sprite"] == 1
    plain = tmp_path / "plain.png"
    Image.fromarray(sprites[0]).save(plain)
    with pytest.raises(DdpmEdgeError, match="no ddpm-edge generation parameters"):
        read_record(plain)
    jpeg = tmp_path / "photo.png"
    Image.fromarray(sprites[0]).save(jpeg, format="JPEG")
    with pytest.raises(DdpmEdgeError, match="not a PNG"):
        read_record(jpeg)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DdpmEdgeError, match="not a readable PNG"):
        read_record(tmp_path / "junk.png")


def make_batch(rng, n=4, background="transparent") -> Batch:
    params = GenerationParams(n=n, sampler="ddim", steps=5, seed=3, background=background)
    sprites = rng.integers(0, 256, size=(n, 16, 16, 4 if background == "transparent" else 3), dtype=np.uint8)
    return Batch(samples=np.zeros((n, 3, 16, 16), np.float32), sprites=sprites, names=tuple(sprite_names(["x"] * n)),
                 params=params, model_sha256="0" * 64, model_path="/m.onnx", version="test",
                 frames=(sprites[..., :3],))


def test_write_outputs_is_all_or_nothing(rng, tmp_path, monkeypatch):
    batch = make_batch(rng)
    targets = Targets(sheet=tmp_path / "s.png", atlas=True, each=tmp_path / "each", animation=tmp_path / "a.gif")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "_write_animation", broken)
    with pytest.raises((OSError, DdpmEdgeError), match="disk full"):
        write_outputs(batch, targets, SheetLayout())
    assert list(tmp_path.iterdir()) == []                                # no sheet, no atlas, no folder, no .part
    monkeypatch.undo()
    written = write_outputs(batch, targets, SheetLayout())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "each", "s.json", "s.png"]
    assert len(written) == 3 + 4 and len(list((tmp_path / "each").iterdir())) == 4


@pytest.mark.parametrize("targets,match", [
    (lambda t: Targets(), "nothing to write"),
    (lambda t: Targets(sheet=t / "s.jpg"), ".png or .npy"),
    (lambda t: Targets(sheet=t / "s.npy", atlas=True), "atlas"),
    (lambda t: Targets(sheet=t / "s.png", animation=t / "a.mp4"), "animation must end"),
    (lambda t: Targets(sheet=t / "s.png", animation=t / "s.png"), "different files"),
    (lambda t: Targets(sheet=t / "file.txt" / "s.png"), "not a folder"),
    (lambda t: Targets(sheet=t / "s.png", each=t / "file.txt" / "each"), "not a folder"),
    (lambda t: Targets(sheet=t / "s.png", each=t / "file.txt"), "not a folder"),
    (lambda t: Targets(sheet=t / "s.png", frame_ms=0), "frame duration"),
    (lambda t: Targets(sheet=t / "s.png", animation=t / "a.gif", frames_every=0), "every 1 or more"),
])
def test_targets_refuse_up_front(tmp_path, targets, match):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DdpmEdgeError, match=match):
        targets(tmp_path).check()
