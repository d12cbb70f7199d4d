"""Preprocessed image tensors: decode and preprocess each image once, keep them compact.

A dataset's images are decoded and preprocessed once per (image list, preprocessing) and kept as
one ``(N, 1, S, S)`` tensor. When every image took the release's exact 8-bit path the tensor is
uint8 (the bytes the release feeds to ``ToTensor``, 4x smaller than float32); otherwise float32,
so 16-bit and float data keep their precision. :func:`as_float` turns either into float32.

On disk the tensor is a ``.npy`` file (read with ``allow_pickle=False``) written atomically, with
a manifest ``<name>.manifest.json`` beside it holding the preprocessing key and a hash of the
paths, sizes and modification times: a cache built for other images or another preprocessing is
rebuilt, never reused.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sarfewshot.data.io import read_sar
from sarfewshot.data.listing import progress as progress_bar
from sarfewshot.data.transforms import PreprocessSpec, preprocess, preprocess_uint8
from sarfewshot.utils.io import atomic_write_bytes, atomic_write_json, sha256_text

CACHE_FORMAT = 1


def manifest_path(cache_file: Path) -> Path:
    """The manifest that belongs to ``cache_file``."""
    cache_file = Path(cache_file)
    return cache_file.with_name(cache_file.stem + ".manifest.json")


def paths_fingerprint(paths: Sequence[str]) -> str:
    """sha256 over the paths with their sizes and modification times (detects edited files)."""
    lines = []
    for p in paths:
        try:
            st = os.stat(p)
            lines.append(f"{p}\t{st.st_size}\t{st.st_mtime_ns}")
        except OSError:
            lines.append(f"{p}\t-\t-")
    return sha256_text("\n".join(lines))


def _expected_manifest(paths: Sequence[str], spec: PreprocessSpec) -> dict:
    return {
        "format": CACHE_FORMAT,
        "spec": spec.key(),
        "count": len(paths),
        "paths_sha256": paths_fingerprint(paths),
    }


def _load_cached(cache_file: Path, expected: dict) -> np.ndarray | None:
    """The cached array when its manifest matches ``expected``, else None (stale or absent)."""
    man = manifest_path(cache_file)
    if not (cache_file.is_file() and man.is_file()):
        return None
    try:
        stored = json.loads(man.read_text())
        if any(stored.get(k) != v for k, v in expected.items()):
            return None
        arr = np.load(cache_file, allow_pickle=False)
    except (OSError, ValueError, AttributeError):
        return None  # an unreadable cache is rebuilt: it is only a cache
    if arr.ndim != 4 or arr.shape[0] != expected["count"] or str(arr.dtype) != stored.get("dtype"):
        return None
    return arr


def _save_cached(cache_file: Path, arr: np.ndarray, manifest: dict) -> None:
    # The manifest goes first and comes back last, so a crash in between leaves no manifest
    # vouching for the wrong array.
    manifest_path(cache_file).unlink(missing_ok=True)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(cache_file, buf.getvalue())
    atomic_write_json(
        manifest_path(cache_file), {**manifest, "dtype": str(arr.dtype), "shape": list(arr.shape)}
    )


def _decode_all(paths: Sequence[str], spec: PreprocessSpec, show: bool) -> np.ndarray:
    """Decode and preprocess every path into one (N, 1, S, S) uint8 or float32 array."""
    out = np.empty((len(paths), 1, spec.size, spec.size), dtype=np.uint8)
    for i, path in enumerate(progress_bar(paths, desc="preprocess images", enabled=show)):
        image = read_sar(path)
        chip = preprocess_uint8(image, spec) if out.dtype == np.uint8 else None
        if chip is None:
            if out.dtype == np.uint8:
                # The first non-8-bit result: the whole buffer becomes float32 in [0, 1].
                out = out.astype(np.float32) / np.float32(255.0)
            chip = _unit_float(preprocess(image, spec))
        out[i, 0] = chip
    if spec.normalize:
        out = (_unit_float(out) - np.float32(spec.mean)) / np.float32(spec.std)
    return out


def _unit_float(chip: np.ndarray) -> np.ndarray:
    return chip.astype(np.float32) / np.float32(255.0) if chip.dtype == np.uint8 else chip


def load_image_tensor(
    paths: Sequence[str],
    spec: PreprocessSpec,
    cache_file: Path | None = None,
    progress: bool = True,
):
    """Preprocessed images as an ``(N, 1, S, S)`` tensor, from ``cache_file`` when it is fresh.

    Args:
        paths: image files, in the order of the returned rows.
        spec: the preprocessing.
        cache_file: a ``.npy`` path to reuse/write (None: no disk cache).
        progress: show a progress bar while decoding.

    Returns:
        uint8 when every image took the exact 8-bit path (no normalisation), else float32.

    Raises:
        ImageReadError: naming the first file that cannot be decoded.
    """
    import torch

    paths = [str(p) for p in paths]
    expected = _expected_manifest(paths, spec)
    arr = _load_cached(Path(cache_file), expected) if cache_file is not None else None
    if arr is None:
        arr = _decode_all(paths, spec, progress)
        if cache_file is not None:
            _save_cached(Path(cache_file), arr, expected)
    return torch.from_numpy(np.ascontiguousarray(arr))


def as_float(t):
    """float32 values of a cached tensor: uint8 divided by 255 (as ToTensor), float unchanged."""
    import torch

    return t.float().div(255.0) if t.dtype == torch.uint8 else t.float()
