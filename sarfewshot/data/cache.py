"""Preprocessed image tensors: decode and preprocess each image once, keep them compact.

A dataset's images are decoded and preprocessed once per (image list, preprocessing) and kept as
one ``(N, 1, S, S)`` tensor. When every image took the release's exact 8-bit path the tensor is
uint8 (the bytes the release feeds to ``ToTensor``, 4x smaller than float32); otherwise float32,
so 16-bit and float data keep their precision. :func:`as_float` turns either into float32.

On disk the tensor is a ``.npy`` file (read with ``allow_pickle=False``) written atomically, with
a manifest ``<name>.manifest.json`` beside it holding the preprocessing key and the dataset
version: the dataset fingerprint (:mod:`sarfewshot.data.fingerprint`, content hashes) when the
caller has one, else a hash of the paths, sizes and modification times. A cache built for other
images or another preprocessing is rebuilt, never reused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sarfewshot.data.io import read_sar
from sarfewshot.data.listing import progress as progress_bar
from sarfewshot.data.transforms import PreprocessSpec, preprocess, preprocess_uint8
from sarfewshot.utils.io import array_manifest_path, load_array, save_array, sha256_text

CACHE_FORMAT = 2  # 2: the manifest names the dataset version


def manifest_path(cache_file: Path) -> Path:
    """The manifest that belongs to ``cache_file``."""
    return array_manifest_path(cache_file)


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


def _expected_manifest(paths: Sequence[str], spec: PreprocessSpec, version: str | None) -> dict:
    return {
        "format": CACHE_FORMAT,
        "spec": spec.key(),
        "count": len(paths),
        "paths_sha256": sha256_text("\n".join(paths)),
        "version": version or paths_fingerprint(paths),
    }


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
    version: str | None = None,
    refresh: bool = False,
):
    """Preprocessed images as an ``(N, 1, S, S)`` tensor, from ``cache_file`` when it is fresh.

    Args:
        paths: image files, in the order of the returned rows.
        spec: the preprocessing.
        cache_file: a ``.npy`` path to reuse/write (None: no disk cache).
        progress: show a progress bar while decoding.
        version: the dataset fingerprint the cache must match (None: paths, sizes and mtimes).
        refresh: decode again and rewrite ``cache_file`` even when it looks fresh.

    Returns:
        uint8 when every image took the exact 8-bit path (no normalisation), else float32.

    Raises:
        ImageReadError: naming the first file that cannot be decoded.
    """
    import torch

    paths = [str(p) for p in paths]
    expected = _expected_manifest(paths, spec, version)
    reuse = cache_file is not None and not refresh
    arr = load_array(cache_file, expected) if reuse else None
    if arr is None:
        arr = _decode_all(paths, spec, progress)
        if cache_file is not None:
            save_array(cache_file, arr, expected)
    return torch.from_numpy(np.ascontiguousarray(arr))


def as_float(t):
    """float32 values of a cached tensor: uint8 divided by 255 (as ToTensor), float unchanged."""
    import torch

    return t.float().div(255.0) if t.dtype == torch.uint8 else t.float()
