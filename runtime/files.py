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
        with tempfile.NamedTemporaryFile(prefix=TEMP_PREFIX, suffix=".probe", dir=parent):
            pass
    except OSError as e:
        raise DdpmEdgeError(f"cannot write {path}: {e.strerror or e}") from None
    return path


TEMP_PREFIX = ".ddpm-"   # short: a temp name must fit wherever a legal output name (≤ 255 bytes) does


def _temp_beside(path: Path, suffix: str = ".part") -> str:
    """A new empty file with a short hidden name in `path`'s folder, with the usual output permissions."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    return tmp


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success rename it over `path`, on failure delete it."""
    path = check_writable(path)
    try:
        tmp = _temp_beside(path)
    except OSError as e:
        raise DdpmEdgeError(f"cannot write {path}: {e.strerror or e}") from None
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
    inputs/outputs: {label: path or None}, or (label, path) pairs."""
    pairs = lambda given: given.items() if isinstance(given, dict) else given   # noqa: E731
    outs = [(label, Path(p)) for label, p in pairs(outputs) if p is not None]
    ins = [(label, Path(p)) for label, p in pairs(inputs) if p is not None]
    for out_label, out in outs:
        for in_label, source in ins:
            if same_file(out, source):
                raise DdpmEdgeError(f"{out_label} {out} is the {in_label} it is made from; "
                                    "give another output path (inputs are never overwritten)")
    for k, (label_a, a) in enumerate(outs):
        for label_b, b in outs[k + 1:]:
            if same_file(a, b):
                raise DdpmEdgeError(f"{label_a} and {label_b} are the same file {a}; give different paths")


class OutputSet:
    """Several outputs that appear all together or not at all.

        with OutputSet() as outputs:
            write(outputs.stage(a)); write(outputs.stage(b))   # temp files beside a and b
        # here both a and b are in place; on any exception (or signal) neither changed

    Each file is written to a short temp name beside it; when the block succeeds they are renamed into
    place one by one, an existing file first moved aside so that a failure midway (a full disk, a
    rename refused, a signal) restores every file already replaced and removes every file already
    added. Two staged paths that are one file are refused.
    """

    def __init__(self):
        self.staged: list[tuple[Path, Path]] = []   # (final, temp)

    def __enter__(self) -> "OutputSet":
        return self

    def stage(self, path: str | os.PathLike) -> Path:
        path = check_writable(path)
        for final, _ in self.staged:
            if same_file(final, path):
                raise DdpmEdgeError(f"two outputs are the same file {path}; give different paths")
        try:
            tmp = Path(_temp_beside(path))
        except OSError as e:
            raise DdpmEdgeError(f"cannot write {path}: {e.strerror or e}") from None
        self.staged.append((path, tmp))
        return tmp

    def __exit__(self, kind, error, tb) -> None:
        try:
            if kind is None:
                self._commit()
        finally:
            for _, tmp in self.staged:
                tmp.unlink(missing_ok=True)

    def _commit(self) -> None:
        done: list[tuple[Path, Path | None]] = []   # (final, the previous file moved aside or None)
        try:
            for final, tmp in self.staged:
                backup = None
                if final.exists():
                    backup = Path(_temp_beside(final, ".old"))
                    os.replace(final, backup)
                done.append((final, backup))
                os.replace(tmp, final)
        except BaseException as e:
            for final, backup in reversed(done):   # undo: the disk as it was
                if backup is not None:
                    os.replace(backup, final)
                else:
                    final.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise DdpmEdgeError(f"cannot write {final}: {e.strerror or e}; nothing was written") from None
            raise
        for _, backup in done:
            if backup is not None:
                backup.unlink(missing_ok=True)
