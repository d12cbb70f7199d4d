"""File helpers: atomic writes and content hashes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Union

import numpy as np

from sarfewshot.errors import OutputError

PathLike = Union[str, "os.PathLike[str]"]


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of a UTF-8 string."""
    return hashlib.sha256(text.encode()).hexdigest()


def current_umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a torn one.

    The bytes go to a temporary file in the same folder, are flushed to disk, then renamed over
    ``path`` (``os.replace`` is atomic on POSIX and Windows for same-volume renames). The file
    gets the mode a plain ``open(path, "w")`` would (0644 under umask 022): ``mkstemp`` creates
    it 0600, which would hide results from the rest of a lab sharing the file system.

    Raises:
        OutputError: naming ``path`` when the folder or file cannot be written (the path is a
            file or read-only, the disk is full, permission denied).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError.from_os(exc, path) from exc
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError.from_os(exc, path) from exc
        raise


def atomic_write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
    """Serialise ``obj`` as JSON and write it atomically (see :func:`atomic_write_bytes`)."""
    text = json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write a text file atomically."""
    atomic_write_bytes(path, text.encode())


def array_manifest_path(path: PathLike) -> Path:
    """The JSON manifest that vouches for the ``.npy`` file ``path``."""
    path = Path(path)
    return path.with_name(path.stem + ".manifest.json")


def save_array(path: PathLike, arr: np.ndarray, manifest: dict) -> None:
    """Write ``arr`` as ``.npy`` (no pickle) plus a manifest of ``manifest``, dtype and shape.

    The manifest is removed first and written last, so a crash in between leaves no manifest
    vouching for a half-replaced array.
    """
    array_manifest_path(path).unlink(missing_ok=True)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    meta = {**manifest, "dtype": str(arr.dtype), "shape": list(arr.shape)}
    atomic_write_json(array_manifest_path(path), meta)


def load_array(path: PathLike, expected: dict) -> Union[np.ndarray, None]:
    """The array saved by :func:`save_array` when its manifest holds every ``expected`` item
    and matches the file's dtype and shape; None when absent, stale or unreadable (a cache is
    rebuilt, never trusted)."""
    man = array_manifest_path(path)
    if not (Path(path).is_file() and man.is_file()):
        return None
    try:
        stored = json.loads(man.read_text())
        if any(stored.get(k) != v for k, v in expected.items()):
            return None
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, AttributeError):
        return None
    if str(arr.dtype) != stored.get("dtype") or list(arr.shape) != stored.get("shape"):
        return None
    return arr
