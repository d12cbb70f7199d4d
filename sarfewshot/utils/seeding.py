"""Seeded generators owned by the caller: every random draw in the toolkit comes from one.

Seeds are derived from stable hashes of their context (never Python's salted ``hash``), so
``(seed, "mstar_soc", "train")`` gives the same stream on every machine and Python version.
"""

from __future__ import annotations

import hashlib
import random
from typing import Union

import numpy as np

Key = Union[int, str]


def derive_seed(*keys: Key) -> int:
    """Return a stable 63-bit integer seed from a tuple of ints and strings."""
    text = "\x1f".join(f"{type(k).__name__}:{k}" for k in keys)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def numpy_rng(*keys: Key) -> np.random.Generator:
    """A numpy Generator seeded by ``keys`` (e.g. ``numpy_rng(seed, dataset, "train")``)."""
    return np.random.default_rng(derive_seed(*keys))


def torch_generator(*keys: Key, device: str = "cpu"):
    """A ``torch.Generator`` seeded by ``keys``."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(*keys))
    return gen


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch global states (for third-party code we do not control).

    Unlike Dassl's ``if args.seed:``, seed 0 is a real seed; only a negative seed means unseeded.
    """
    if seed < 0:
        return
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
