"""File helpers: atomic writes (temp file in the same folder, then rename) and content hashes."""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import DdpmEdgeError


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class HashedFile:
    """Mixin for objects with a `path`: its sha256, computed on first use and kept."""

    path: Path

    @functools.cached_property
    def sha256(self) -> str:
        return sha256_file(self.path)


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, with a reason, when `path` cannot be written (before any expensive work)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DdpmEdgeError(f"cannot write {path}: it is a directory")
    if not parent.is_dir():
        raise DdpmEdgeError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise DdpmEdgeError(f"cannot write {path}: folder {parent} is not writable")
    try:  # permissions can pass (root) where the file system still refuses: probe for real
        with tempfile.NamedTemporaryFile(prefix=f".{path.name}.", suffix=".probe", dir=parent):
            pass
    except OSError as e:
        raise DdpmEdgeError(f"cannot write {path}: {e.strerror or e}") from None
    return path


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success rename it over `path`, on failure delete it."""
    path = check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as e:
        raise DdpmEdgeError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise DdpmEdgeError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same resolved path, or (both existing) the same inode."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(inputs: dict, outputs: dict) -> None:
    """Refuse, before any work, an output that is one of the inputs (it would be replaced by what is
    made from it) or two outputs that are one file (one would silently replace the other).
    inputs/outputs: {label: path or None}."""
    outs = [(label, Path(p)) for label, p in outputs.items() if p is not None]
    ins = [(label, Path(p)) for label, p in inputs.items() if p is not None]
    for out_label, out in outs:
        for in_label, source in ins:
            if same_file(out, source):
                raise DdpmEdgeError(f"{out_label} {out} is the {in_label} it is made from; "
                                    "give another output path (inputs are never overwritten)")
    for k, (label_a, a) in enumerate(outs):
        for label_b, b in outs[k + 1:]:
            if same_file(a, b):
                raise DdpmEdgeError(f"{label_a} and {label_b} are the same file {a}; give different paths")
