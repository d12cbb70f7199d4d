"""Tiny synthetic SAR-like chips for the pretraining tests: bright targets on dark clutter with
multiplicative (gamma) speckle, generated from a seeded generator, never real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sarfewshot.utils.seeding import numpy_rng


def sar_chip(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One (size, size) float32 chip in [0, 1]: 1-3 bright rectangles, clutter, speckle."""
    img = np.full((size, size), 0.08, dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        h, w = rng.integers(size // 8, size // 3, size=2)
        top, left = rng.integers(0, size - h), rng.integers(0, size - w)
        img[top : top + h, left : left + w] = rng.uniform(0.4, 0.8)
    speckle = rng.gamma(4.0, 1.0 / 4.0, size=(size, size)).astype(np.float32)
    return np.clip(img * speckle, 0.0, 1.0)


def sar_batch(n: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """(n, 1, size, size) float32 tensor of synthetic chips."""
    rng = numpy_rng(seed, "synthetic-sar")
    return torch.from_numpy(np.stack([sar_chip(rng, size) for _ in range(n)]))[:, None]


def write_chips(folder: Path, n: int = 8, size: int = 72, seed: int = 0) -> list[Path]:
    """Write ``n`` 8-bit PNG chips (half of them in a nested sub-folder); returns their paths."""
    from PIL import Image

    rng = numpy_rng(seed, "synthetic-sar-files")
    paths = []
    for i in range(n):
        sub = folder / ("nested/deeper" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        arr = (sar_chip(rng, size) * 255).round().astype(np.uint8)
        path = sub / f"chip_{i:02d}.png"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths
