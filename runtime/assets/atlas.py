"""Atlases: where each sprite sits in its sheet, in the formats game engines read without plugins.

    hash    sheet.json   TexturePacker "JSON (hash)": frames by name (Phaser load.atlas, PixiJS Assets.load)
    array   sheet.json   TexturePacker "JSON (array)": frames as a list with `filename` (melonJS, Phaser)
    godot   sheet.tres + sheet/<sprite>.tres   Godot 4 text resources: one AtlasTexture per sprite and a
                         SpriteFrames (animation "default") of them, for AnimatedSprite2D; no importer needed

Frame names are `<sheet stem>/<sprite name>` (`food/food_003`): unique per sheet, so engines with one
global texture cache (PixiJS) keep two sheets of the same class apart. Every frame carries the fields
TexturePacker writes (frame, rotated, trimmed, spriteSourceSize, sourceSize, pivot); sprites are never
trimmed or rotated. meta.app says "texturepacker" because melonJS picks its parser by that word.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from ..errors import DdpmEdgeError

FORMATS = ("hash", "array", "godot")
DEFAULT_FORMAT = "hash"
APP = "ddpm-edge (texturepacker-compatible json)"
PIVOT = {"x": 0.5, "y": 0.5}   # TexturePacker's default pivot: the frame's centre
GODOT_FPS = 5.0


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise DdpmEdgeError(f"unknown atlas format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def frame_names(sheet_stem: str, names: list[str]) -> list[str]:
    """Atlas frame names for a sheet: `food/food_003`."""
    return [f"{sheet_stem}/{name}" for name in names]


def atlas_cells(names: list[str], sprite_size: tuple[int, int], layout) -> tuple[tuple[int, int], list]:
    """(sheet_w, sheet_h) and [(name, x, y, w, h)] in sheet pixels, in sprite order."""
    height, width = sprite_size
    n = len(names)
    cells = layout.cells(n, height, width)
    return layout.sheet_size(n, height, width), [(name, *cell) for name, cell in zip(names, cells)]


def _frame(x: int, y: int, w: int, h: int) -> dict:
    return {"frame": {"x": x, "y": y, "w": w, "h": h}, "rotated": False, "trimmed": False,
            "spriteSourceSize": {"x": 0, "y": 0, "w": w, "h": h}, "sourceSize": {"w": w, "h": h},
            "pivot": dict(PIVOT)}


def _meta(image_name: str, size: tuple[int, int], channels: int, app_version: str) -> dict:
    return {"app": APP, "version": app_version or "1.0", "image": image_name,
            "format": "RGBA8888" if channels == 4 else "RGB888", "size": {"w": size[0], "h": size[1]},
            "scale": "1"}


def texturepacker_hash(names: list[str], sprite_size: tuple[int, int], layout, image_name: str,
                       channels: int = 4, app_version: str = "") -> dict:
    """TexturePacker "JSON (hash)": {"frames": {name: frame}, "meta": ...}. Names are used as given."""
    size, cells = atlas_cells(names, sprite_size, layout)
    return {"frames": {name: _frame(x, y, w, h) for name, x, y, w, h in cells},
            "meta": _meta(image_name, size, channels, app_version)}


def texturepacker_array(names: list[str], sprite_size: tuple[int, int], layout, image_name: str,
                        channels: int = 4, app_version: str = "") -> dict:
    """TexturePacker "JSON (array)": {"frames": [{"filename": name, **frame}], "meta": ...}."""
    size, cells = atlas_cells(names, sprite_size, layout)
    return {"frames": [{"filename": name, **_frame(x, y, w, h)} for name, x, y, w, h in cells],
            "meta": _meta(image_name, size, channels, app_version)}


def _godot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def godot_atlas_texture(sheet_path: str, x: int, y: int, w: int, h: int) -> str:
    """One AtlasTexture, Godot 4 text resource (format=3). `sheet_path` is relative to this file (Godot
    resolves a relative ext_resource path against the loading file's folder) or res://."""
    return (f'[gd_resource type="AtlasTexture" load_steps=2 format=3]\n\n'
            f'[ext_resource type="Texture2D" path={_godot_string(sheet_path)} id="1_sheet"]\n\n'
            f'[resource]\natlas = ExtResource("1_sheet")\nregion = Rect2({x}, {y}, {w}, {h})\n')


def godot_sprite_frames(texture_paths: list[str], fps: float = GODOT_FPS) -> str:
    """A SpriteFrames resource with one looping animation "default" over the given AtlasTexture files."""
    ext = [f'[ext_resource type="AtlasTexture" path={_godot_string(p)} id="{k + 1}_frame"]'
           for k, p in enumerate(texture_paths)]
    frames = ", ".join(f'{{\n"duration": 1.0,\n"texture": ExtResource("{k + 1}_frame")\n}}'
                       for k in range(len(texture_paths)))
    return (f'[gd_resource type="SpriteFrames" load_steps={len(texture_paths) + 1} format=3]\n\n'
            + "\n".join(ext) + "\n\n"
            + f'[resource]\nanimations = [{{\n"frames": [{frames}],\n"loop": true,\n"name": &"default",\n'
              f'"speed": {fps!r}\n}}]\n')


def atlas_files(fmt: str, sheet: Path, names: list[str], sprite_size: tuple[int, int], layout,
                channels: int = 4, app_version: str = "") -> dict[Path, str]:
    """Every file the atlas of `sheet` consists of, path → text. `names` are the sprites' own names
    (food_003); frames get the sheet's stem as prefix."""
    import json

    check_format(fmt)
    sheet = Path(sheet)
    stem = sheet.stem
    if fmt in ("hash", "array"):
        build = texturepacker_hash if fmt == "hash" else texturepacker_array
        atlas = build(frame_names(stem, names), sprite_size, layout, sheet.name, channels, app_version)
        return {sheet.with_suffix(".json"): json.dumps(atlas, indent=2) + "\n"}
    _, cells = atlas_cells(names, sprite_size, layout)
    folder = sheet.parent / stem
    files: dict[Path, str] = {}
    for name, x, y, w, h in cells:
        files[folder / f"{name}.tres"] = godot_atlas_texture(f"../{sheet.name}", x, y, w, h)
    relative = [str(PurePosixPath(stem) / f"{name}.tres") for name in names]
    files[sheet.with_suffix(".tres")] = godot_sprite_frames(relative)
    return files


def main_atlas_path(fmt: str, sheet: Path) -> Path:
    """The file an engine is pointed at: sheet.json, or sheet.tres (the SpriteFrames) for godot."""
    return Path(sheet).with_suffix(".tres" if check_format(fmt) == "godot" else ".json")
