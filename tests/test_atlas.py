"""Atlas formats checked against each engine's documented reading of them: TexturePacker JSON hash
(Phaser, PixiJS), JSON array (melonJS's parser: frames[].filename, meta.app containing "texturepacker")
and Godot 4 text resources (TSCN/TRES format=3: AtlasTexture + SpriteFrames), read back here with a
small parser that follows the documented grammar and Godot's relative ext_resource path rule."""
import json
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

from ddpm_edge.runtime.assets import atlas as atlas_mod
from ddpm_edge.runtime.assets.outputs import (Batch, SheetLayout, Targets, save_atlas, sprite_names,
                                              write_outputs)
from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.params import GenerationParams

TP_FRAME_KEYS = ["frame", "rotated", "trimmed", "spriteSourceSize", "sourceSize", "pivot"]


def make_batch(rng, n=5, label="food") -> Batch:
    sprites = rng.integers(0, 256, size=(n, 16, 16, 4), dtype=np.uint8)
    return Batch(samples=np.zeros((n, 3, 16, 16), np.float32), sprites=sprites,
                 names=tuple(sprite_names([label] * n)), params=GenerationParams(n=n, seed=1, background="transparent"),
                 model_sha256="0" * 64, model_path="unet.onnx", version="test")


def crop(image: Image.Image, f: dict) -> np.ndarray:
    return np.asarray(image.crop((f["x"], f["y"], f["x"] + f["w"], f["y"] + f["h"])))


def test_hash_is_texturepacker_shaped(rng, tmp_path):
    batch = make_batch(rng)
    layout = SheetLayout(cols=3, scale=2, padding=1)
    write_outputs(batch, Targets(sheet=tmp_path / "food.png", atlas=True), layout)
    atlas = json.loads((tmp_path / "food.json").read_text())
    image = Image.open(tmp_path / "food.png")
    assert list(atlas["frames"]) == [f"food/food_{k:03d}" for k in range(5)]
    for k, entry in enumerate(atlas["frames"].values()):
        assert list(entry) == TP_FRAME_KEYS                                     # TexturePacker's order
        assert entry["pivot"] == {"x": 0.5, "y": 0.5}
        np.testing.assert_array_equal(crop(image, entry["frame"]), batch.sprites[k].repeat(2, 0).repeat(2, 1))
    meta = atlas["meta"]
    assert list(meta) == ["app", "version", "image", "format", "size", "scale"]
    assert meta["image"] == "food.png" and meta["size"] == {"w": image.size[0], "h": image.size[1]}
    assert meta["format"] == "RGBA8888" and meta["scale"] == "1"


def melonjs_read(atlas: dict) -> dict:
    """melonJS (TextureAtlas + parseTexturePacker): the format is picked by meta.app containing
    "texturepacker"; frames is a list, entries without `filename` are skipped."""
    app = atlas["meta"]["app"]
    if "texturepacker" not in app and "free-tex-packer" not in app:
        raise ValueError(f"Unknown texture atlas format: {app}")
    return {f["filename"]: f for f in atlas["frames"] if "filename" in f}


def test_array_is_what_melonjs_reads(rng, tmp_path):
    batch = make_batch(rng, n=4)
    write_outputs(batch, Targets(sheet=tmp_path / "food.png", atlas=True, atlas_format="array"), SheetLayout(scale=1))
    atlas = json.loads((tmp_path / "food.json").read_text())
    assert isinstance(atlas["frames"], list)
    frames = melonjs_read(atlas)
    assert list(frames) == [f"food/food_{k:03d}" for k in range(4)]
    image = Image.open(tmp_path / "food.png")
    for k, entry in enumerate(atlas["frames"]):
        assert list(entry) == ["filename", *TP_FRAME_KEYS]
        np.testing.assert_array_equal(crop(image, entry["frame"]), batch.sprites[k])
    with pytest.raises(ValueError):                       # the check is real: another app name is refused
        melonjs_read({**atlas, "meta": {**atlas["meta"], "app": "ddpm-edge"}})


def test_frame_names_unique_across_sheets_of_one_class(rng, tmp_path):
    names = sprite_names(["food"] * 3)
    a = json.loads(save_atlas(tmp_path / "a.json", names, (16, 16), SheetLayout(), "a.png").read_text())
    b = json.loads(save_atlas(tmp_path / "b.json", names, (16, 16), SheetLayout(), "b.png", fmt="array").read_text())
    assert not set(a["frames"]) & {f["filename"] for f in b["frames"]}


# -- Godot 4 text resources -------------------------------------------------------------------------

HEADING = re.compile(r'^\[(\w+)((?: \w+=(?:"(?:[^"\\]|\\.)*"|[\w.]+))*)\]$')
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[\w.]+)')


def parse_godot_resource(path: Path) -> dict:
    """The TSCN/TRES grammar as documented: a descriptor heading first, then [ext_resource ...] and
    [sub_resource ...] headings, then [resource] with `key = value` lines. Returns descriptor fields,
    ext resources by id (path resolved relative to `path`, as ResourceLoaderText does) and the
    [resource] properties as raw text."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and "\r" not in path.read_text()                 # newline-terminated, LF only
    sections, current = [], None
    for line in lines:
        if not line.strip() or line.startswith(";"):
            continue
        match = HEADING.match(line)
        if match:
            fields = {k: json.loads(v) if v.startswith('"') else v for k, v in FIELD.findall(match.group(2))}
            current = [match.group(1), fields, []]
            sections.append(current)
        else:
            assert current is not None, f"{path}: text before the descriptor: {line!r}"
            current[2].append(line)
    kind, descriptor, body = sections[0]
    assert kind == "gd_resource" and not body and descriptor["format"] == "3"
    ext = {}
    for kind, fields, body in sections[1:-1]:
        assert kind == "ext_resource" and not body and {"type", "path", "id"} <= set(fields)
        assert fields["id"] not in ext
        target = fields["path"]
        resolved = Path(target) if "://" in target else (path.parent / PurePosixPath(target)).resolve()
        ext[fields["id"]] = (fields["type"], resolved)
    kind, _, body = sections[-1]
    assert kind == "resource"
    properties = {}
    text = "\n".join(body)
    for match in re.finditer(r"^(\w+) = ", text, re.M):
        properties[match.group(1)] = None
    keys = list(properties)
    for k, key in enumerate(keys):
        start = text.index(f"{key} = ") + len(key) + 3
        end = text.index(f"\n{keys[k + 1]} = ") if k + 1 < len(keys) else len(text)
        properties[key] = text[start:end]
    assert int(descriptor["load_steps"]) == len(ext) + 1
    for ref in re.findall(r'ExtResource\("([^"]+)"\)', text):
        assert ref in ext, f"{path}: ExtResource({ref!r}) is not declared"
    return {"descriptor": descriptor, "ext": ext, "properties": properties}


def test_godot_resources(rng, tmp_path):
    batch = make_batch(rng, n=5)
    layout = SheetLayout(cols=2, scale=4, padding=1)
    project = tmp_path / "game" / "sprites"
    project.mkdir(parents=True)
    written = write_outputs(batch, Targets(sheet=project / "food.png", atlas=True, atlas_format="godot",
                                           each=project / "food"), layout)
    assert project / "food.tres" in written
    image = Image.open(project / "food.png")
    frames = parse_godot_resource(project / "food.tres")
    assert frames["descriptor"]["type"] == "SpriteFrames"
    animations = frames["properties"]["animations"]
    assert '"name": &"default"' in animations and '"loop": true' in animations
    refs = re.findall(r'"texture": ExtResource\("([^"]+)"\)', animations)
    assert len(refs) == 5 and len(re.findall(r'"duration": 1\.0', animations)) == 5
    for k, ref in enumerate(refs):                                            # in sprite order
        kind, texture_path = frames["ext"][ref]
        assert kind == "AtlasTexture" and texture_path == (project / "food" / f"food_{k:03d}.tres").resolve()
        texture = parse_godot_resource(texture_path)
        assert texture["descriptor"]["type"] == "AtlasTexture"
        ((sheet_type, sheet_path),) = texture["ext"].values()
        assert sheet_type == "Texture2D" and sheet_path == (project / "food.png").resolve()
        assert texture["properties"]["atlas"] == f'ExtResource("{next(iter(texture["ext"]))}")'
        x, y, w, h = map(int, re.fullmatch(r"Rect2\((\d+), (\d+), (\d+), (\d+)\)",
                                           texture["properties"]["region"]).groups())
        region = crop(image, {"x": x, "y": y, "w": w, "h": h})
        np.testing.assert_array_equal(region, batch.sprites[k].repeat(4, 0).repeat(4, 1))
        np.testing.assert_array_equal(region, np.asarray(Image.open(project / "food" / f"food_{k:03d}.png")))


def test_godot_parser_can_fail(tmp_path):
    bad = tmp_path / "bad.tres"
    bad.write_text('[gd_resource type="AtlasTexture" load_steps=2 format=3]\n\n[resource]\n'
                   'atlas = ExtResource("1_sheet")\n')
    with pytest.raises(AssertionError):
        parse_godot_resource(bad)


def test_godot_output_all_or_nothing(rng, tmp_path, monkeypatch):
    batch = make_batch(rng, n=3)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atlas_mod, "godot_sprite_frames", broken)
    with pytest.raises((OSError, DdpmEdgeError), match="disk full"):
        write_outputs(batch, Targets(sheet=tmp_path / "s.png", atlas_format="godot", atlas=True), SheetLayout())
    assert list(tmp_path.iterdir()) == []                              # no sheet, no folder, no .tres


def test_atlas_format_checked_up_front(tmp_path):
    with pytest.raises(DdpmEdgeError, match="atlas format"):
        Targets(sheet=tmp_path / "s.png", atlas=True, atlas_format="xml").check()
    (tmp_path / "s").write_text("a file where the godot folder goes")
    with pytest.raises(DdpmEdgeError, match="not a folder"):
        Targets(sheet=tmp_path / "s.png", atlas=True, atlas_format="godot").check()
