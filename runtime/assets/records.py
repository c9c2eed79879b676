"""Generation parameters in a PNG: one iTXt chunk, key "ddpm-edge", holding compact sorted JSON.

The record names the model (file name and sha256), the sampler settings, the seed, the context, the
background keying and the sheet layout, plus the toolkit version. It carries no time stamp, so the same
record and pixels give the same file bytes; `ddpm-run --from` reads it back.

Formats:
    "ddpm-edge-params/2"  every GenerationParams field, the layout, model, version, backend and precision
    "ddpm-edge-params/1"  written before solvers gained η and spacings and backends were recorded: it lacks
                          those fields, which mean V1_DEFAULTS. Regenerated with nothing changed, a /1 record
                          is written back as /1, so the file comes out byte for byte (see `downgrade`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import PngImagePlugin

from ..errors import DdpmEdgeError
from .background import LEGACY_KEYING
from ..limits import MAX_JSON_DEPTH, MAX_RECORD_BYTES, check_limit, json_depth_ok
from .pngchunks import read_text_chunk

CHUNK_KEY = "ddpm-edge"
RECORD_FORMAT = "ddpm-edge-params/2"
RECORD_FORMAT_V1 = "ddpm-edge-params/1"
RECORD_FORMATS = (RECORD_FORMAT_V1, RECORD_FORMAT)
# fields /2 added, with the value a /1 record implies
V1_DEFAULTS = {"eta": 0.0, "spacing": "uniform", "rng": "pcg64", "backend": "onnxruntime", "precision": "fp32",
               "keying": LEGACY_KEYING}


def downgrade(record: dict) -> dict | None:
    """`record` (a /2 record without "format") as a /1 record, or None when it says more than /1 can."""
    if any(record.get(name, default) != default for name, default in V1_DEFAULTS.items()
           if not (name == "keying" and record.get("background") is None)):   # nothing keyed: keying moot
        return None
    return {"format": RECORD_FORMAT_V1, **{k: v for k, v in record.items() if k not in V1_DEFAULTS}}


def png_info(record: dict | None) -> PngImagePlugin.PngInfo | None:
    """A PngInfo carrying `record` (JSON-serialisable; format /2 unless it names one), or None when there is
    nothing to record."""
    if record is None:
        return None
    info = PngImagePlugin.PngInfo()
    info.add_itxt(CHUNK_KEY, json.dumps({"format": RECORD_FORMAT, **record}, sort_keys=True,
                                        separators=(",", ":")))
    return info


def read_record(path: str | os.PathLike) -> dict:
    """The record stored in a PNG written by ddpm-run (sheet, per-sprite PNG or APNG), as stored: a /1
    record keeps its format and lacks the /2 fields (GenerationParams.from_record fills them in)."""
    path = Path(path)
    if not path.is_file():
        raise DdpmEdgeError(f"cannot read {path}: no such file")
    text = read_text_chunk(path, CHUNK_KEY)    # the chunk only: pixels are never decoded
    if text is None:
        raise DdpmEdgeError(f"{path} carries no ddpm-edge generation parameters (only PNGs written by ddpm-run do)")
    check_limit(f"{path}: its ddpm-edge parameters (bytes)", len(text), MAX_RECORD_BYTES)
    if not json_depth_ok(text):
        raise DdpmEdgeError(f"{path}: its ddpm-edge parameters nest deeper than {MAX_JSON_DEPTH} levels")
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        raise DdpmEdgeError(f"{path}: its ddpm-edge parameters are not valid JSON") from None
    if not isinstance(record, dict) or record.get("format") not in RECORD_FORMATS:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise DdpmEdgeError(f"{path}: unsupported ddpm-edge parameter format {found!r} "
                            f"(expected {' or '.join(RECORD_FORMATS)})")
    return record
