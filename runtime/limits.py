"""Every size that can come from a file, a record or model metadata, bounded before anything is allocated.

A 1 KB PNG record, a string in ONNX metadata or a tensor shape in a checkpoint must not be able to ask
for gigabytes: each is checked against one of these named limits first (README "Limits"). They are far
above anything the course model needs (16×16 sprites, T = 500, n_feat 64) and keep a run well under
1 GB of memory for any input file of 1 MB or less.
"""
from __future__ import annotations

import re
from itertools import accumulate

from .errors import DdpmEdgeError

MAX_N = 1 << 14                  # sprites per run
MAX_SAMPLE_VALUES = 1 << 24      # n·C·H·W floats of x (64 MB as float32); with guidance the UNet sees 2×
MAX_CALL_ROWS = 256              # rows per backend call when no --max-batch is given (bounds activations)
MAX_FIXED_BATCH = 4096           # a graph whose batch dimension is fixed above this is refused
MAX_T = 10_000                   # diffusion steps of a schedule (course: 500)
MAX_CHANNELS = 4                 # image channels a model may produce (1, 3 or 4 are drawn)
MAX_SIDE = 256                   # sprite height/width in pixels (course: 16; MNIST-like: 28)
MAX_CFEAT = 1024                 # context features (classes)
MAX_N_FEAT = 1024                # ContextUnet width (course: 64 / 256)
MAX_SHEET_PIXELS = 1 << 27       # a sprite sheet (512 MB as RGBA)
MAX_ANIMATION_PIXELS = 1 << 28   # all frames of an animation together
MAX_METADATA_BYTES = 1 << 20     # all ONNX metadata_props keys and values together
MAX_TEXT_CHUNK = 1 << 23         # a PNG text chunk holding a record (and its inflated text)
MAX_RECORD_BYTES = 1 << 23       # the record's JSON text
MAX_JSON_DEPTH = 16              # nesting of a record's JSON
MAX_PNG_CHUNKS = 1 << 16         # chunks walked before the record is given up on
MAX_CHECKPOINT_BYTES = 1 << 30   # a .pth, and the inflated size of all its zip members
MAX_DATASET_BYTES = 1 << 30      # a training .npy array
MAX_GUIDANCE = 1e6               # classifier-free guidance weight: finite in float32 with room for (1+w)·eps
MAX_SEED = (1 << 64) - 1         # seeds are unsigned 64-bit (numpy's SeedSequence words)


def check_limit(what: str, value: int, limit: int, hint: str = "") -> int:
    """`value` if it is at most `limit`, else a one-line DdpmEdgeError naming the limit."""
    if value > limit:
        raise DdpmEdgeError(f"{what} is {value:,}, above the limit of {limit:,}{'; ' + hint if hint else ''}")
    return value


def json_depth_ok(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the brackets of JSON `text` nest at most `limit` deep, found without parsing (so a deeply
    nested document never reaches the recursive parser); brackets inside strings do not count."""
    brackets = re.findall(r"[\[\]{}]", _STRING.sub("", text))
    return max(accumulate(1 if b in "[{" else -1 for b in brackets), default=0) <= limit


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
