"""Read one text chunk of a PNG without decoding its pixels.

A PNG is an 8-byte signature then chunks: length (4 bytes, big-endian), type (4), data, CRC-32 of type
and data (4) (PNG spec, section 5.3). Only text chunks are read (tEXt, zTXt, iTXt); image data
(IDAT, APNG's fdAT) is skipped by seeking, so a record is read in constant memory from a sheet of any
size, and every length is bounded (runtime/limits.py) before it is read or inflated.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from ..errors import DdpmEdgeError
from ..limits import MAX_PNG_CHUNKS, MAX_TEXT_CHUNK

SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")
MAX_CHUNK_LENGTH = (1 << 31) - 1          # the spec's bound on a chunk's length
OTHER_FORMATS = {b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF", b"RIFF": "WEBP", b"BM": "BMP"}


def _inflate(data: bytes, what: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, MAX_TEXT_CHUNK + 1)
    except zlib.error:
        raise DdpmEdgeError(f"{what}: its compressed text is damaged") from None
    if len(text) > MAX_TEXT_CHUNK or inflater.unconsumed_tail:
        raise DdpmEdgeError(f"{what}: its text inflates beyond {MAX_TEXT_CHUNK:,} bytes")
    return text


def _decode(kind: bytes, data: bytes, what: str) -> tuple[str, str]:
    """(keyword, text) of a tEXt / zTXt / iTXt chunk's data."""
    keyword, sep, rest = data.partition(b"\0")
    if not sep or not 1 <= len(keyword) <= 79:
        raise DdpmEdgeError(f"{what}: a {kind.decode()} chunk has no valid keyword")
    try:
        if kind == b"tEXt":
            return keyword.decode("latin-1"), rest.decode("latin-1")
        if kind == b"zTXt":
            return keyword.decode("latin-1"), _inflate(rest[1:], what).decode("latin-1")
        # iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text
        if len(rest) < 2:
            raise ValueError("iTXt too short")
        flag, tail = rest[0], rest[2:]
        _language, _, tail = tail.partition(b"\0")
        _translated, _, text = tail.partition(b"\0")
        text = _inflate(text, what) if flag == 1 else text
        return keyword.decode("latin-1"), text.decode("utf-8")
    except (UnicodeDecodeError, ValueError):
        raise DdpmEdgeError(f"{what}: a {kind.decode()} chunk is not valid text") from None


def read_text_chunk(path: str | os.PathLike, key: str) -> str | None:
    """The text of the first tEXt/zTXt/iTXt chunk whose keyword is `key`, or None when there is none.
    A file that is not a PNG, a truncated chunk, a bad CRC or an oversized text chunk under `key` is a
    one-line DdpmEdgeError."""
    path = Path(path)
    what = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(SIGNATURE))
            if head != SIGNATURE:
                other = next((name for magic, name in OTHER_FORMATS.items() if head.startswith(magic)), None)
                if other:
                    raise DdpmEdgeError(f"{path} is a {other} image, not a PNG written by ddpm-run")
                raise DdpmEdgeError(f"{path} is not a readable PNG: no PNG signature")
            want = key.encode("latin-1")
            for _ in range(MAX_PNG_CHUNKS):
                header = f.read(8)
                if len(header) < 8:
                    raise DdpmEdgeError(f"{path} is not a readable PNG: truncated before its end chunk")
                length, kind = struct.unpack(">I4s", header)
                if length > MAX_CHUNK_LENGTH:
                    raise DdpmEdgeError(f"{path} is not a readable PNG: a chunk claims {length:,} bytes")
                if kind == b"IEND":
                    return None
                if kind not in TEXT_TYPES:
                    f.seek(length + 4, os.SEEK_CUR)       # data and CRC, unread
                    continue
                if length > MAX_TEXT_CHUNK:
                    start = f.read(len(want) + 1)
                    if start == want + b"\0":
                        raise DdpmEdgeError(f"{path}: its {key} text chunk is {length:,} bytes, above the limit "
                                            f"of {MAX_TEXT_CHUNK:,}")
                    f.seek(length - len(start) + 4, os.SEEK_CUR)
                    continue
                data = f.read(length)
                crc = f.read(4)
                if len(data) < length or len(crc) < 4:
                    raise DdpmEdgeError(f"{path} is not a readable PNG: truncated inside a {kind.decode()} chunk")
                if zlib.crc32(kind + data) != struct.unpack(">I", crc)[0]:
                    raise DdpmEdgeError(f"{path} is not a readable PNG: a {kind.decode()} chunk fails its CRC")
                if not data.startswith(want + b"\0"):
                    continue
                return _decode(kind, data, what)[1]
            raise DdpmEdgeError(f"{path} is not a readable PNG: more than {MAX_PNG_CHUNKS:,} chunks")
    except OSError as e:
        raise DdpmEdgeError(f"cannot read {path}: {e.strerror or e}") from None
