"""Sprite datasets: the open emoji sprite set we build and ship, and the three formats the trainer reads.

Every format loads into the course's layout:

    images  uint8   [N, H, W, C]   (the course's sprites_1788_16x16.npy layout)
    labels  float32 [N, K]         one-hot rows, K = n_cfeat
    class_names  K strings

Formats (`load_dataset(path)`):
    ours     a folder with sprites.npy, labels.npy and dataset.json (class names, licence, provenance)
    course   sprites_1788_16x16.npy with sprite_labels_nc_1788_16x16.npy beside it (the .npy file or
             the folder holding the pair); class names are the course's five
    png      a folder with one subfolder per class (sorted names) of .png files, all H×W

The emoji set (`build_emoji_dataset`): Noto Color Emoji glyphs (images Apache-2.0, font OFL-1.1) from
Debian's fonts-noto-color-emoji, grouped by Unicode's emoji-test.txt into five classes (EMOJI_CLASSES),
rendered at the font's bitmap size, cropped to the glyph, fitted into 16×16 on white.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddpm_edge.runtime.contract import COURSE_CONTEXT_NAMES
from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.files import atomic_path, atomic_write_bytes, sha256_file
from ddpm_edge.runtime.limits import MAX_CFEAT, MAX_DATASET_BYTES, MAX_SIDE, check_limit

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
EMOJI_FONT_SIZE = 109           # the only bitmap strike of Noto Color Emoji
SPRITE_SIZE = 16
BACKGROUND = (255, 255, 255)    # plain white, as the course's sprites

# class name → (emoji-test group, subgroups or None for the whole group). Five classes keep n_cfeat=5.
EMOJI_CLASSES: dict[str, list[tuple[str, tuple[str, ...] | None]]] = {
    "face": [("Smileys & Emotion", ("face-smiling", "face-affection", "face-tongue", "face-hand",
                                    "face-neutral-skeptical", "face-sleepy", "face-unwell", "face-hat",
                                    "face-glasses", "face-concerned", "face-negative", "face-costume",
                                    "cat-face", "monkey-face"))],
    "person": [("People & Body", ("person", "person-gesture", "person-role", "person-fantasy",
                                  "person-activity", "person-sport", "person-resting", "family"))],
    "animal": [("Animals & Nature", None)],   # animals and plants
    "food": [("Food & Drink", None)],
    "object": [("Objects", None)],
}
SKIN_TONES = range(0x1F3FB, 0x1F400)      # 🏻 … 🏿
HAIR_STYLES = range(0x1F9B0, 0x1F9B4)     # red, curly, bald, white hair
DROPPED_SUBGROUPS = ("keycap",)           # flags go with their group, which no class uses

COURSE_SPRITES = "sprites_1788_16x16.npy"
COURSE_LABELS = "sprite_labels_nc_1788_16x16.npy"
OUR_SPRITES, OUR_LABELS, OUR_META = "sprites.npy", "labels.npy", "dataset.json"


@dataclass
class SpriteDataset:
    images: np.ndarray            # uint8 [N, H, W, C]
    labels: np.ndarray            # float32 [N, K]
    class_names: tuple[str, ...]
    source: str                   # what was loaded, for the checkpoint
    format: str                   # ours, course or png

    @property
    def sha256(self) -> str:
        """Content hash (shapes, pixels, labels, names): the same data in any format hashes the same."""
        digest = hashlib.sha256()
        digest.update(json.dumps([list(self.images.shape), list(self.labels.shape), list(self.class_names)]).encode())
        digest.update(np.ascontiguousarray(self.images, dtype=np.uint8).tobytes())
        digest.update(np.ascontiguousarray(self.labels, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def class_index(self) -> np.ndarray:
        """[N] int64, the argmax of each one-hot row."""
        return self.labels.argmax(axis=1)

    def counts(self) -> dict[str, int]:
        index = self.class_index()
        return {name: int((index == k).sum()) for k, name in enumerate(self.class_names)}


# ---------------------------------------------------------------------------------------------------
# Loading


def integral_pixels(images: np.ndarray, where: str) -> np.ndarray:
    """Pixels of another dtype → uint8, only when every value is a whole number 0–255: NaN, complex,
    boolean and fractional values (e.g. [0, 1] floats, which a cast would truncate to near-black) are refused."""
    kind = images.dtype.kind
    if kind not in "iuf":
        raise DdpmEdgeError(f"{where}: sprites must be uint8 pixels 0–255, got {images.dtype}")
    if kind == "f":
        if not np.isfinite(images).all():
            raise DdpmEdgeError(f"{where}: sprites hold NaN or infinite pixels")
        if (images != np.round(images)).any():
            hint = " (they look like [0, 1] floats: multiply by 255)" if images.max() <= 1 else ""
            raise DdpmEdgeError(f"{where}: sprites must be whole-number pixels 0–255, got fractional {images.dtype}{hint}")
    if images.min() < 0 or images.max() > 255:
        raise DdpmEdgeError(f"{where}: sprites must be pixels 0–255, got values from {images.min()} to {images.max()}")
    return images.astype(np.uint8)


def check_arrays(images, labels, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate the course layout; return (uint8 [N,H,W,C], float32 [N,K])."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[3] not in (1, 3) or images.shape[0] == 0:
        raise DdpmEdgeError(f"{where}: sprites must be [N, H, W, C] with C = 1 or 3, got shape {images.shape}")
    if images.shape[1] != images.shape[2] or images.shape[1] % 4 or images.shape[1] > MAX_SIDE:
        raise DdpmEdgeError(f"{where}: sprites must be square with a side divisible by 4 and at most {MAX_SIDE}, "
                            f"got {images.shape[1:3]}")
    if images.dtype != np.uint8:
        images = integral_pixels(images, where)
    if labels.ndim != 2 or labels.shape[0] != images.shape[0] or not 1 <= labels.shape[1] <= MAX_CFEAT:
        raise DdpmEdgeError(f"{where}: labels must be one-hot [N, K] with N = {images.shape[0]}, got shape {labels.shape}")
    if labels.dtype.kind not in "iuf" or not np.all(np.isfinite(labels)):
        raise DdpmEdgeError(f"{where}: labels must be finite numbers")
    labels = labels.astype(np.float32)
    if not (np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(axis=1) == 1)):
        raise DdpmEdgeError(f"{where}: labels must be one-hot rows (a single 1 per sprite)")
    return np.ascontiguousarray(images), np.ascontiguousarray(labels)


def read_npy(path: Path) -> np.ndarray:
    """A .npy array; its header's shape is checked against the file's size (memory-mapped first) so a
    small file cannot ask for a huge allocation."""
    try:
        check_limit(f"{path.name}: its size (bytes)", path.stat().st_size, MAX_DATASET_BYTES)
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        return np.array(mapped)
    except (ValueError, OSError, EOFError, TypeError) as e:
        raise DdpmEdgeError(f"{path} is not a readable .npy array: {str(e).splitlines()[0][:120]}") from None


def load_ours(folder: Path) -> SpriteDataset:
    try:
        meta = json.loads((folder / OUR_META).read_text())
        names = tuple(str(n) for n in meta["class_names"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DdpmEdgeError(f"{folder / OUR_META} is missing or malformed: {e}") from None
    images, labels = check_arrays(read_npy(folder / OUR_SPRITES), read_npy(folder / OUR_LABELS), str(folder))
    if len(names) != labels.shape[1]:
        raise DdpmEdgeError(f"{folder}: {len(names)} class names for {labels.shape[1]} label columns")
    return SpriteDataset(images, labels, names, str(folder), "ours")


def load_course(sprites: Path, labels: Path) -> SpriteDataset:
    if not labels.is_file():
        raise DdpmEdgeError(f"course labels not found beside {sprites.name}: expected {labels}")
    images, onehot = check_arrays(read_npy(sprites), read_npy(labels), str(sprites))
    k = onehot.shape[1]
    names = COURSE_CONTEXT_NAMES if k == len(COURSE_CONTEXT_NAMES) else tuple(f"class{i}" for i in range(k))
    return SpriteDataset(images, onehot, names, str(sprites), "course")


def load_png_folder(folder: Path) -> SpriteDataset:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DdpmEdgeError(f"{folder}: no class subfolders of .png files (and no sprites.npy or course .npy pair)")
    images, index = [], []
    for k, class_dir in enumerate(classes):
        files = sorted(class_dir.glob("*.png"))
        if not files:
            raise DdpmEdgeError(f"{class_dir}: class folder holds no .png files")
        for file in files:
            try:
                with Image.open(file) as im:
                    if max(im.size) > MAX_SIDE:
                        raise DdpmEdgeError(f"{file}: {im.size[0]}×{im.size[1]} pixels, sprites are at most {MAX_SIDE}")
                    im = im.convert("RGBA")
                    rgb = Image.new("RGB", im.size, BACKGROUND)
                    rgb.paste(im, mask=im.getchannel("A"))
                    images.append(np.asarray(rgb, dtype=np.uint8))
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError, SyntaxError) as e:
                raise DdpmEdgeError(f"{file} is not a readable PNG: {str(e).splitlines()[0][:120]}") from None
            index.append(k)
    sizes = {im.shape for im in images}
    if len(sizes) != 1:
        raise DdpmEdgeError(f"{folder}: all PNGs must have one size, found {sorted(s[:2] for s in sizes)}")
    labels = np.eye(len(classes), dtype=np.float32)[index]
    images_arr, labels = check_arrays(np.stack(images), labels, str(folder))
    return SpriteDataset(images_arr, labels, tuple(p.name for p in classes), str(folder), "png")


def load_dataset(path: str | os.PathLike) -> SpriteDataset:
    """Load any of the three formats (see module doc) from a folder or a course sprites .npy file."""
    path = Path(path)
    if not path.exists():
        raise DdpmEdgeError(f"dataset not found: {path}")
    if path.is_file():
        if path.suffix != ".npy":
            raise DdpmEdgeError(f"{path}: expected a folder or a course sprites .npy file")
        if path.name == OUR_SPRITES:
            return load_ours(path.parent)
        labels = path.with_name(path.name.replace("sprites_", "sprite_labels_nc_", 1))
        if labels == path:
            raise DdpmEdgeError(f"{path.name}: cannot tell where its labels are; name it like {COURSE_SPRITES}")
        return load_course(path, labels)
    if (path / OUR_SPRITES).is_file():
        return load_ours(path)
    if (path / COURSE_SPRITES).is_file():
        return load_course(path / COURSE_SPRITES, path / COURSE_LABELS)
    return load_png_folder(path)


def split_indices(n: int, held_out: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded (train, held-out) split of range(n)."""
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(n * held_out))
    return np.sort(order[k:]), np.sort(order[:k])


# ---------------------------------------------------------------------------------------------------
# Building the emoji set


@dataclass(frozen=True)
class Emoji:
    codepoints: tuple[int, ...]
    name: str
    group: str
    subgroup: str

    @property
    def text(self) -> str:
        return "".join(map(chr, self.codepoints))


def parse_emoji_test(path: Path = EMOJI_TEST) -> list[Emoji]:
    """Fully-qualified emoji of emoji-test.txt, in file order, with their group and subgroup."""
    group = subgroup = ""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#") and "; fully-qualified" in line:
            codes, rest = line.split(";", 1)
            name = rest.split("#", 1)[1].strip().split(" ", 2)[-1]  # "😀 E1.0 grinning face" → name
            out.append(Emoji(tuple(int(c, 16) for c in codes.split()), name, group, subgroup))
    return out


def select_emoji(emoji: list[Emoji]) -> list[tuple[Emoji, int]]:
    """(emoji, class index) for the classes of EMOJI_CLASSES; no skin tones, hair styles, flags, keycaps."""
    chosen = []
    for e in emoji:
        if any(c in SKIN_TONES or c in HAIR_STYLES for c in e.codepoints) or e.subgroup in DROPPED_SUBGROUPS:
            continue
        for k, rules in enumerate(EMOJI_CLASSES.values()):
            if any(e.group == g and (subs is None or e.subgroup in subs) for g, subs in rules):
                chosen.append((e, k))
                break
    return chosen


def render_emoji(text: str, font, size: int = SPRITE_SIZE):
    """One emoji → uint8 [size, size, 3]: rendered in colour, cropped to its glyph, padded to a square
    on white, downsampled (Lanczos) to size×size. None when the font draws nothing."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (EMOJI_FONT_SIZE * 3, EMOJI_FONT_SIZE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((EMOJI_FONT_SIZE // 2, EMOJI_FONT_SIZE // 4), text, font=font, embedded_color=True)
    box = canvas.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), BACKGROUND + (255,))
    square.alpha_composite(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    small = square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8)


LICENCE_TEXT = """\
Emoji sprites (16x16 RGB) rendered from Noto Color Emoji.

Images: Noto Emoji artwork, Copyright Google Inc., licensed under the Apache License, Version 2.0
(https://www.apache.org/licenses/LICENSE-2.0). Font: Noto Color Emoji, licensed under the SIL Open Font
License, Version 1.1 (https://openfontlicense.org). Emoji groups: Unicode emoji-test.txt, Unicode License
(https://www.unicode.org/license.txt).

This folder is a derived work: every glyph was rendered, cropped, padded to a square on white and
downsampled to 16x16 by ddpm_edge.ddpm_ref.dataset.build_emoji_dataset; see dataset.json for the exact
sources, package versions, class mapping and counts.
"""


def build_emoji_dataset(out: str | os.PathLike, font_path: Path = EMOJI_FONT, test_path: Path = EMOJI_TEST,
                        size: int = SPRITE_SIZE) -> SpriteDataset:
    """Render the emoji set into `out` (sprites.npy, labels.npy, dataset.json, LICENSE.txt). Reproducible:
    the same font and emoji-test.txt give byte-identical arrays."""
    from PIL import ImageFont

    for p in (font_path, test_path):
        if not Path(p).is_file():
            raise DdpmEdgeError(f"{p} not found (Debian packages fonts-noto-color-emoji and unicode-data)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    font = ImageFont.truetype(str(font_path), EMOJI_FONT_SIZE)
    images, index, names = [], [], []
    for e, k in select_emoji(parse_emoji_test(Path(test_path))):
        pixels = render_emoji(e.text, font, size)
        if pixels is not None:
            images.append(pixels)
            index.append(k)
            names.append(e.name)
    class_names = tuple(EMOJI_CLASSES)
    data = SpriteDataset(np.stack(images), np.eye(len(class_names), dtype=np.float32)[index], class_names,
                         str(out), "ours")
    meta = {
        "class_names": list(class_names),
        "counts": data.counts(),
        "class_mapping": {name: [[g, list(s) if s else "all"] for g, s in rules] for name, rules in EMOJI_CLASSES.items()},
        "dropped": "unqualified/minimally-qualified, skin tones, hair styles, keycaps, flags, and groups not mapped",
        "emoji_names": names,
        "sha256": data.sha256,
        "sources": {"font": str(font_path), "font_sha256": sha256_file(font_path),
                    "emoji_test": str(test_path), "emoji_test_sha256": sha256_file(test_path),
                    "packages": _package_versions(("fonts-noto-color-emoji", "unicode-data"))},
        "rendering": f"Pillow ImageFont.truetype(size={EMOJI_FONT_SIZE}), embedded_color=True; cropped to alpha>8; "
                     f"padded to a square on white {BACKGROUND}; Lanczos to {size}x{size}",
        "licence": "images Apache-2.0 (Noto Emoji), font OFL-1.1; see LICENSE.txt",
        "builder": "python -m ddpm_edge.ddpm_ref.dataset OUT_DIR",
    }
    with atomic_path(out / OUR_SPRITES) as tmp, open(tmp, "wb") as f:
        np.save(f, data.images)
    with atomic_path(out / OUR_LABELS) as tmp, open(tmp, "wb") as f:
        np.save(f, data.labels.astype(np.uint8))
    atomic_write_bytes(out / OUR_META, (json.dumps(meta, indent=1, ensure_ascii=False) + "\n").encode())
    atomic_write_bytes(out / "LICENSE.txt", LICENCE_TEXT.encode())
    return data


def _package_versions(packages) -> dict[str, str]:
    import subprocess

    versions = {}
    for p in packages:
        try:
            versions[p] = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p], capture_output=True,
                                         text=True, timeout=10).stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            versions[p] = "unknown"
    return versions


def main(argv: list[str] | None = None) -> int:
    """`python -m ddpm_edge.ddpm_ref.dataset OUT_DIR`: rebuild the emoji sprite set into OUT_DIR (never a
    default folder: an installed package is no place to write)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m ddpm_edge.ddpm_ref.dataset",
        description="Rebuild the open emoji sprite set (sprites.npy, labels.npy, dataset.json, LICENSE.txt) into "
                    "OUT_DIR, byte for byte the shipped ddpm_ref/data with the same Debian packages: "
                    "fonts-noto-color-emoji and unicode-data (sudo apt-get install fonts-noto-color-emoji "
                    "unicode-data).")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created if missing)")
    args = parser.parse_args(argv)
    if args.out_dir.startswith("-"):
        parser.error(f"OUT_DIR {args.out_dir!r} looks like an option")
    try:
        built = build_emoji_dataset(args.out_dir)
    except DdpmEdgeError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out_dir}: {len(built.images)} sprites, {built.counts()}, sha256 {built.sha256[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
