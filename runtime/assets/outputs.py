"""Everything a generated batch can become on disk, for game engines and for people:

    sheet    sprites.png   a grid of sprites (nearest-neighbour scale, optional padding), or .npy raw x_0
    atlas    sprites.json  where each sprite sits: TexturePacker JSON (hash or array) or Godot 4 resources (atlas.py)
    each     DIR/food_003.png …  one PNG per sprite
    anim     denoise.gif   the denoising as an animation (.gif, or .png/.apng for a lossless APNG)

Every PNG carries the batch's generation record (records.py). `save_*` write one output atomically;
`write_outputs` writes a whole set so that either all of it appears or none does.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor

from .atlas import DEFAULT_FORMAT, atlas_files, check_format, frame_names, main_atlas_path, texturepacker_array
from .atlas import texturepacker_hash as atlas_dict  # noqa: F401  (public name of the JSON (hash) builder)
from .background import TRANSPARENT
from ..errors import DdpmEdgeError
from ..files import OutputSet, atomic_path, check_outputs, check_writable
from ..limits import MAX_ANIMATION_PIXELS, MAX_SHEET_PIXELS, check_limit
from .images import grid_shape, make_sheet, sheet_array, sheet_geometry, to_image
from ..params import GenerationParams
from .records import RECORD_FORMAT, RECORD_FORMAT_V1, downgrade, png_info

DEFAULT_FRAME_MS = 60     # each denoising frame of the animation
FINAL_FRAME_MS = 1500     # the finished sprites stay up this long before the loop restarts
ANIMATION_SUFFIXES = (".gif", ".png", ".apng")
SHEET_SUFFIXES = (".png", ".npy")


@dataclass(frozen=True)
class SheetLayout:
    """`cols` sprites per row (None: a square-ish grid), each scaled `scale`× by nearest neighbour,
    `padding` pixels around and between cells."""
    cols: int | None = None
    scale: int = 4
    padding: int = 0

    def __post_init__(self):
        for name, value, low, high in (("cols", self.cols, 1, 1 << 20), ("scale", self.scale, 1, 64),
                                       ("padding", self.padding, 0, 1024)):
            if value is None and name == "cols":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise DdpmEdgeError(f"sheet {name} must be an integer from {low} to {high}, got {value!r}")
            object.__setattr__(self, name, int(value))

    def fixed(self, n: int) -> "SheetLayout":
        """This layout with the column count it gets for n sprites."""
        return SheetLayout(grid_shape(n, self.cols)[1], self.scale, self.padding)

    def cells(self, n: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(x, y, w, h) of each of n cells in the sheet, in sprite order."""
        return sheet_geometry(n, height, width, self.cols, self.scale, self.padding)[1]

    def sheet_size(self, n: int, height: int, width: int) -> tuple[int, int]:
        return sheet_geometry(n, height, width, self.cols, self.scale, self.padding)[0]

    def as_dict(self) -> dict:
        return asdict(self)

    def check_size(self, n: int, height: int, width: int, frames: int = 0) -> None:
        """Refuse (before anything is drawn) a sheet above MAX_SHEET_PIXELS, or an animation of `frames`
        sheets above MAX_ANIMATION_PIXELS."""
        w, h = self.sheet_size(n, height, width)
        check_limit("the sprite sheet's pixel count", w * h, MAX_SHEET_PIXELS,
                    "use a smaller --scale or --padding, or fewer sprites")
        if frames:
            check_limit("the animation's pixel count (all frames)", frames * w * h, MAX_ANIMATION_PIXELS,
                        "use fewer frames (--gif-every), a smaller --scale, or fewer sprites")

    @classmethod
    def from_record(cls, record: dict) -> "SheetLayout":
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})


def sprite_names(labels: list[str]) -> list[str]:
    """Per-sprite names for atlas frames and files: label and index, e.g. food_003."""
    width = max(3, len(str(len(labels) - 1)))
    return [f"{re.sub(r'[^A-Za-z0-9_-]+', '-', label).strip('-') or 'sprite'}_{k:0{width}d}"
            for k, label in enumerate(labels)]


def sheet_fill(background: str | None, channels: int) -> tuple[int, ...]:
    """Colour of the sheet's padding and empty cells: the background colour, transparent, or black."""
    if background is None or channels not in (3, 4):
        return (0,) * channels
    if background == TRANSPARENT:
        return (0, 0, 0, 0)
    return tuple(ImageColor.getrgb(background)[:3]) + (255,) * (channels - 3)


@dataclass(frozen=True)
class Batch:
    """One generated batch and what it takes to reproduce it."""
    samples: np.ndarray              # float32 [n, C, H, W], x_0 unclipped
    sprites: np.ndarray              # uint8 [n, H, W, C], or C+1 with the background keyed transparent
    names: tuple[str, ...]           # per-sprite names: food_003
    params: GenerationParams         # resolved: the seed and steps actually used
    model_sha256: str
    model_path: str
    version: str                     # ddpm-edge version that generated it
    frames: tuple[np.ndarray, ...] = field(default=(), repr=False)  # uint8 [n, H, W, C] snapshots, final excluded
    backend: str = "onnxruntime"     # the UNet's backend and precision (runtime/backends)
    precision: str = "fp32"
    record_format: str = RECORD_FORMAT   # RECORD_FORMAT_V1: regenerated unchanged from a /1 record, written as /1

    @property
    def fill(self) -> tuple[int, ...]:
        return sheet_fill(self.params.background, self.sprites.shape[-1])

    def record(self, layout: SheetLayout) -> dict:
        """The generation record every PNG of this batch carries."""
        record = {**self.params.as_dict(), **layout.fixed(len(self.sprites)).as_dict(),
                  "model": self.model_path, "model_sha256": self.model_sha256, "version": self.version,
                  "backend": self.backend, "precision": self.precision}
        if self.record_format == RECORD_FORMAT_V1:
            return downgrade(record) or record
        return record


# -- single outputs, written to a path as given ---------------------------------------------------

def _write_png(image: Image.Image, path: Path, record: dict | None) -> None:
    image.save(path, format="PNG", pnginfo=png_info(record))


def _as_rgba(images: np.ndarray) -> np.ndarray:
    """[N,H,W,3] → [N,H,W,4] opaque; RGBA unchanged."""
    if images.shape[-1] == 4:
        return images
    opaque = np.full(images.shape[:-1] + (1,), 255, dtype=np.uint8)
    return np.concatenate([images if images.shape[-1] == 3 else np.repeat(images, 3, axis=-1), opaque], axis=-1)


def animation_sheets(frames: list[np.ndarray], final: np.ndarray, layout: SheetLayout,
                     fill: tuple[int, ...] | None = None) -> list[Image.Image]:
    """Each snapshot [N,H,W,C] and the final sprites as sheets of one layout (RGBA if the final has alpha)."""
    rgba = final.shape[-1] == 4
    sheets = []
    for images in [*frames, final]:
        images = _as_rgba(images) if rgba else images
        sheets.append(make_sheet(images, cols=layout.cols, scale=layout.scale, padding=layout.padding,
                                 background=fill))
    return sheets


QUANTIZE_SAMPLE = 1 << 18   # pixels a palette is median-cut from (a frame of 1024 sprites has 4M)


def _rgb(keys: np.ndarray) -> np.ndarray:
    """[K] 0xRRGGBB → [K, 3] uint8."""
    return np.stack([keys >> 16, keys >> 8 & 255, keys & 255], axis=-1).astype(np.uint8)


def _gif_frame(images: np.ndarray, layout: SheetLayout, fill: tuple[int, ...] | None) -> Image.Image:
    """Sprites [N,H,W,C] as one palette sheet: exact when the sheet has at most 255 colours, else
    median-cut; index 255 marks alpha < 128 (see _gif_frames). Colours are indexed per sprite pixel, then
    the index sheet is laid out, so the work does not grow with the scale."""
    n, h, w, channels = images.shape
    rgba = _as_rgba(images)
    fill = tuple(fill) if fill is not None else (0,) * channels
    fill_rgba = fill[:3] + (fill[3] if len(fill) == 4 else 255,) if len(fill) >= 3 else (fill[0],) * 3 + (255,)
    rows, cols = grid_shape(n, layout.cols)
    fill_shown = (layout.padding > 0 or rows * cols > n) and fill_rgba[3] >= 128
    opaque = rgba[..., 3] >= 128                                             # [N, H, W]
    rgb = rgba[..., :3][opaque].astype(np.uint32)                            # [M, 3]
    keys = rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]                      # [M] 0xRRGGBB
    if fill_shown:
        keys = np.append(keys, np.uint32(fill_rgba[0] << 16 | fill_rgba[1] << 8 | fill_rgba[2]))
    colours, inverse = np.unique(keys, return_inverse=True)                  # [U] sorted
    if len(colours) <= 255:
        index = np.arange(len(colours), dtype=np.uint8)
        palette = _rgb(colours).reshape(-1).tolist()
    else:   # median cut on at most QUANTIZE_SAMPLE pixels, then every distinct colour to its nearest entry
        step = max(1, len(keys) // QUANTIZE_SAMPLE)
        sample = np.ascontiguousarray(_rgb(keys[::step])[None])              # [1, M/step, 3]
        quantized = Image.fromarray(sample).quantize(255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        distinct = Image.fromarray(np.ascontiguousarray(_rgb(colours)[None]))
        index = np.asarray(distinct.quantize(palette=quantized, dither=Image.Dither.NONE))[0]
        palette = quantized.getpalette()[:255 * 3]
    pixel_index = index[inverse.reshape(-1)]
    sprite_index = np.full(opaque.shape, 255, dtype=np.uint8)
    sprite_index[opaque] = pixel_index[:int(opaque.sum())]
    fill_index = int(pixel_index[-1]) if fill_shown else 255
    sheet = sheet_array(sprite_index[..., None], layout.cols, layout.scale, layout.padding, (fill_index,))
    image = Image.fromarray(np.ascontiguousarray(sheet[..., 0]), "P")
    image.putpalette(palette + [0] * (768 - len(palette)))
    return image


def _gif_frames(sprite_frames: list[np.ndarray], layout: SheetLayout, fill: tuple[int, ...] | None,
                transparent: bool) -> list[Image.Image]:
    """Palette frames; with `transparent`, index 255 is transparent and gets a colour no frame uses, so
    Pillow's disposal-2 delta (taken against that colour) never drops a visible pixel."""
    frames = [_gif_frame(images, layout, fill) for images in sprite_frames]
    if not transparent:
        return frames
    used = {tuple(frame.getpalette()[3 * k:3 * k + 3]) for frame in frames for k in range(255)}
    key = next(c for c in ((255 - (k >> 16), (k >> 8) & 255, 255 - (k & 255)) for k in range(1 << 24))
               if c not in used)                                    # magenta first
    for frame in frames:
        frame.putpalette(frame.getpalette()[:255 * 3] + list(key))
        frame.info["transparency"] = 255
    return frames


def _write_animation(path: Path, frames: list[np.ndarray], final: np.ndarray, layout: SheetLayout,
                     fill: tuple[int, ...] | None, kind: str, frame_ms: int, record: dict | None) -> None:
    """Snapshots [N,H,W,C] then the final sprites as an animation of sheets."""
    durations = [frame_ms] * len(frames) + [max(frame_ms, FINAL_FRAME_MS)]
    if kind == ".gif":
        transparent = final.shape[-1] == 4
        frames = _gif_frames([*frames, final], layout, fill, transparent)
        extra = {"transparency": 255, "background": 255} if transparent else {}
        frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                       disposal=2, optimize=False, **extra)
    else:
        sheets = animation_sheets(frames, final, layout, fill)
        sheets[0].save(path, format="PNG", save_all=True, append_images=sheets[1:], duration=durations, loop=0,
                       disposal=1, blend=0, pnginfo=png_info(record))


def _animation_kind(path: Path) -> str:
    kind = path.suffix.lower()
    if kind not in ANIMATION_SUFFIXES:
        raise DdpmEdgeError(f"animation must end in {', '.join(ANIMATION_SUFFIXES)}, got {path.name!r}")
    return kind


# -- the public helpers: one output each, written atomically ---------------------------------------

def save_sheet(path, sprites: np.ndarray, layout: SheetLayout = SheetLayout(), record: dict | None = None,
               fill: tuple[int, ...] | None = None) -> Path:
    """sprites uint8 [N,H,W,C] → a sheet PNG at `path` (carrying `record` when given)."""
    layout.check_size(*sprites.shape[:3])
    with atomic_path(path) as tmp:
        _write_png(make_sheet(sprites, layout.cols, layout.scale, layout.padding, fill), tmp, record)
    return Path(path)


def save_atlas(path, names: list[str], sprite_size: tuple[int, int], layout: SheetLayout, image_name: str,
               channels: int = 4, fmt: str = DEFAULT_FORMAT) -> Path:
    """The TexturePacker JSON atlas (`fmt` hash or array) for a sheet written with the same names and
    layout; frames are named `<image stem>/<name>`."""
    from .. import __version__
    build = {"hash": atlas_dict, "array": texturepacker_array}.get(check_format(fmt))
    if build is None:
        raise DdpmEdgeError("save_atlas writes JSON atlases (hash, array); Godot resources come from write_outputs")
    atlas = build(frame_names(Path(image_name).stem, names), sprite_size, layout, image_name, channels, __version__)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(atlas, indent=2) + "\n", encoding="utf-8")
    return Path(path)


def save_each(folder, sprites: np.ndarray, names: list[str], scale: int = 1,
              record: dict | None = None) -> list[Path]:
    """One PNG per sprite, `folder/<name>.png` (the folder is created); each records its index as "sprite"."""
    folder = Path(folder)
    folder.mkdir(exist_ok=True)
    paths = []
    for k, name in enumerate(names):
        with atomic_path(folder / f"{name}.png") as tmp:
            _write_png(to_image(sprites[k], scale), tmp, None if record is None else {**record, "sprite": k})
        paths.append(folder / f"{name}.png")
    return paths


def save_animation(path, frames: list[np.ndarray], final: np.ndarray, layout: SheetLayout = SheetLayout(),
                   frame_ms: int = DEFAULT_FRAME_MS, record: dict | None = None,
                   fill: tuple[int, ...] | None = None) -> Path:
    """Snapshots [N,H,W,C] then the final sprites, as sheets: a GIF (.gif) or an APNG (.png/.apng)."""
    kind = _animation_kind(Path(path))
    layout.check_size(*final.shape[:3], frames=len(frames) + 1)
    with atomic_path(path) as tmp:
        _write_animation(tmp, list(frames), final, layout, fill, kind, frame_ms, record)
    return Path(path)


# -- a whole set of outputs -----------------------------------------------------------------------

@dataclass(frozen=True)
class Targets:
    """Where a batch goes. `sheet`: .png (or .npy for raw float32 x_0); `atlas`: write the sheet's atlas
    beside it in `atlas_format` (hash, array: sheet.json; godot: sheet.tres + sheet/*.tres); `each`: a folder for one PNG per sprite; `animation`: .gif, .png or .apng, a
    frame every `frames_every` sampling steps (None: about 30 frames), `frame_ms` each."""
    sheet: Path | None = None
    atlas: bool = False
    each: Path | None = None
    animation: Path | None = None
    frames_every: int | None = None
    frame_ms: int = DEFAULT_FRAME_MS
    atlas_format: str = DEFAULT_FORMAT

    @property
    def atlas_path(self) -> Path | None:
        """The atlas file an engine is pointed at (sheet.json, or sheet.tres for godot)."""
        return main_atlas_path(self.atlas_format, self.sheet) if self.atlas and self.sheet is not None else None

    @property
    def atlas_folder(self) -> Path | None:
        """The folder of the godot format's per-sprite AtlasTextures (the sheet's stem beside it)."""
        if self.atlas and self.sheet is not None and self.atlas_format == "godot":
            return self.sheet.parent / self.sheet.stem
        return None

    def check(self) -> None:
        """Fail, with a reason, before any work when an output cannot be written."""
        if self.sheet is None and self.each is None and self.animation is None:
            raise DdpmEdgeError("nothing to write: give a sheet, a folder for each sprite, or an animation")
        if self.sheet is not None and self.sheet.suffix.lower() not in SHEET_SUFFIXES:
            raise DdpmEdgeError(f"the sheet must end in .png or .npy, got {self.sheet.name!r}")
        if self.atlas and (self.sheet is None or self.sheet.suffix.lower() != ".png"):
            raise DdpmEdgeError("an atlas describes a .png sheet: give a sheet ending in .png")
        check_format(self.atlas_format)
        if self.animation is not None:
            _animation_kind(self.animation)
        if self.frames_every is not None and (isinstance(self.frames_every, bool)
                                              or not isinstance(self.frames_every, int) or self.frames_every < 1):
            raise DdpmEdgeError(f"animation frames must come every 1 or more steps, got {self.frames_every!r}")
        if isinstance(self.frame_ms, bool) or not isinstance(self.frame_ms, int) or not 10 <= self.frame_ms <= 60000:
            raise DdpmEdgeError(f"animation frame duration must be 10 to 60000 ms, got {self.frame_ms!r}")
        files = [p for p in (self.sheet, self.atlas_path, self.animation) if p is not None]
        resolved = [p.resolve() for p in files]
        if len(set(resolved)) != len(resolved):
            raise DdpmEdgeError("the sheet, atlas and animation must be different files")
        for path in files:
            if _parent(path).is_dir():
                check_writable(path)
        for folder in {f for f in (self.each, self.atlas_folder) if f is not None}:
            if folder.exists() and not folder.is_dir():
                raise DdpmEdgeError(f"cannot write sprites into {folder}: it is not a folder")
            if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
                raise DdpmEdgeError(f"cannot write sprites into {folder}: it is not writable")
        self.folders_to_create()   # checks that missing folders can be created

    def folders_to_create(self) -> list[Path]:
        """Folders the outputs need that do not exist yet (parents of the files, the sprite folders),
        outermost first; fails when one cannot be created."""
        needed = [_parent(p) for p in (self.sheet, self.atlas_path, self.animation) if p is not None]
        needed += [f for f in (self.each, self.atlas_folder) if f is not None]
        missing: list[Path] = []
        for folder in needed:
            chain = []
            while not folder.exists():
                chain.append(folder)
                folder = _parent(folder)
            if not folder.is_dir():
                raise DdpmEdgeError(f"cannot write into {chain[-1] if chain else folder}: {folder} is not a folder")
            if chain:
                if not os.access(folder, os.W_OK | os.X_OK):
                    raise DdpmEdgeError(f"cannot create {chain[-1]}: folder {folder} is not writable")
            missing += [f for f in reversed(chain) if f not in missing]
        return missing


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def write_outputs(batch: Batch, targets: Targets, layout: SheetLayout = SheetLayout(),
                  inputs: tuple = ()) -> list[Path]:
    """Write every requested output of `batch`; all of them appear, or (on any failure) none. No output
    may be one of `inputs` (the files the batch was made from) or another output."""
    targets.check()
    n, height, width, channels = batch.sprites.shape
    layout.check_size(n, height, width, frames=len(batch.frames) + 1 if targets.animation is not None else 0)
    layout = layout.fixed(n)
    record = batch.record(layout)
    written: list[Path] = []
    atlas = (atlas_files(targets.atlas_format, targets.sheet, list(batch.names), (height, width), layout, channels,
                         batch.version) if targets.atlas_path is not None else {})
    finals = [p for p in (targets.sheet, *atlas, targets.animation) if p is not None]
    if targets.each is not None:
        finals += [targets.each / f"{name}.png" for name in batch.names]
    check_outputs([("input", p) for p in inputs], [("output", p) for p in finals])   # before anything is written
    folders = targets.folders_to_create()   # created here, removed again (when still empty) on failure
    try:
        with OutputSet() as outputs:
            def stage(path: Path) -> Path:
                written.append(path)
                return outputs.stage(path)

            for folder in folders:
                folder.mkdir()
            if targets.sheet is not None:
                tmp = stage(targets.sheet)
                if targets.sheet.suffix.lower() == ".npy":
                    with open(tmp, "wb") as f:
                        np.save(f, batch.samples)
                else:
                    _write_png(make_sheet(batch.sprites, layout.cols, layout.scale, layout.padding, batch.fill),
                               tmp, record)
            for path, text in atlas.items():
                stage(path).write_text(text, encoding="utf-8")
            if targets.animation is not None:
                _write_animation(stage(targets.animation), list(batch.frames), batch.sprites, layout, batch.fill,
                                 _animation_kind(targets.animation), targets.frame_ms, record)
            if targets.each is not None:
                for k, name in enumerate(batch.names):
                    _write_png(to_image(batch.sprites[k], layout.scale), stage(targets.each / f"{name}.png"),
                               {**record, "sprite": k})
    except BaseException:
        for folder in reversed(folders):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return written


def write_sprite(batch: Batch, k: int, path: Path, layout: SheetLayout = SheetLayout(), inputs: tuple = ()) -> Path:
    """Sprite k of `batch` alone, as `write_outputs` writes it into an `each` folder (same pixels, same
    record with "sprite": k), at `path` (.png; .npy: its raw float32 x_0 [1,C,H,W]). `ddpm-run --from
    food/food_003.png` regenerates that file through this."""
    if not 0 <= k < len(batch.sprites):
        raise DdpmEdgeError(f"sprite {k} is not in a batch of {len(batch.sprites)}")
    path = Path(path)
    if path.suffix.lower() not in SHEET_SUFFIXES:
        raise DdpmEdgeError(f"the output must end in .png or .npy, got {path.name!r}")
    check_outputs([("input", p) for p in inputs], [("output", path)])   # never overwrite what it came from
    layout = layout.fixed(len(batch.sprites))
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, batch.samples[k:k + 1])
        else:
            _write_png(to_image(batch.sprites[k], layout.scale), tmp, {**batch.record(layout), "sprite": k})
    return path

