"""Rules for the validation pool, the part of each train class that is never a support set.

``DATASET.VAL_POOL_RULE``:

- ``random`` (the default): each class's pool is a random subset drawn from
  ``numpy_rng(seed, dataset, "val")``, so it changes with the split seed (see
  :mod:`sarfewshot.data.splits`).
- ``blocks``: each class's pool is up to :data:`BLOCKS_PER_CLASS` contiguous blocks of the
  class's chips ordered by **azimuth** where every chip of the class carries one (a raw MSTAR
  file's Phoenix header ``TargetAz``; a SAMPLE file name's ``azCenter_<A>_<B>``, read as A.B
  degrees), otherwise by the collection's **file order** (the listing's sorted paths). File
  order only approximates azimuth, and on the MSTAR JPEG bundle hardly at all: its ``hbNNNNN``
  names carry none, and a chip's most similar chip is rarely near it in file order
  (docs/mstar_study.md). The blocks alternate with equal gaps around the order (it wraps), at
  an offset drawn from ``numpy_rng(dataset, "val-blocks", class name)``: the pool depends on
  the listing and ``DATASET.VAL_POOL`` only, never on the seed, so one exclusion of the pool
  from pretraining (``pretrain --exclude-split DATASET:val``) covers every seed's cells. Chips
  a few degrees apart look alike; contiguous azimuth blocks keep most of a pool chip's
  neighbours inside the pool instead of among the support candidates.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from sarfewshot.data.base import Datum, Listing
from sarfewshot.errors import SplitError
from sarfewshot.utils.seeding import numpy_rng

__all__ = [
    "BLOCKS_PER_CLASS",
    "VAL_POOL_RULES",
    "block_hold_out",
    "check_rule",
    "chip_azimuth",
    "class_order",
]

VAL_POOL_RULES = ("random", "blocks")
BLOCKS_PER_CLASS = 6
_SAMPLE_AZIMUTH = re.compile(r"azCenter_(\d+)_(\d+)", re.IGNORECASE)


def check_rule(rule: str) -> str:
    """``rule`` if it is a known ``DATASET.VAL_POOL_RULE``; else a SplitError naming the key."""
    if rule not in VAL_POOL_RULES:
        raise SplitError(
            f"DATASET.VAL_POOL_RULE {rule!r}: choose one of {', '.join(VAL_POOL_RULES)}"
        )
    return rule


def chip_azimuth(path: Path) -> float | None:
    """The azimuth (degrees) a chip carries in its file name or raw header, else None."""
    from sarfewshot.data.io import is_raw_mstar_file, read_phoenix_header

    m = _SAMPLE_AZIMUTH.search(path.name)
    if m:
        return float(f"{int(m[1])}.{m[2]}")
    if is_raw_mstar_file(path):
        try:
            value = read_phoenix_header(path).get("TargetAz")
            return float(value) if value not in (None, "") else None
        except (OSError, ValueError, SplitError):
            return None
    return None


def class_order(listing: Listing, items: Sequence[Datum]) -> tuple[list[int], str]:
    """Indices of one class's ``items`` by azimuth (when all carry one) or in listing order.

    Returns:
        The order and its source, ``"azimuth"`` or ``"file order"``.
    """
    azimuths = [chip_azimuth(Path(listing.abspath(d))) for d in items]
    if items and all(a is not None for a in azimuths):
        keys = [(a % 360.0, d.impath) for a, d in zip(azimuths, items)]
        return sorted(range(len(items)), key=keys.__getitem__), "azimuth"
    return sorted(range(len(items)), key=lambda i: items[i].impath), "file order"


def _near_equal(total: int, parts: int, rng: np.random.Generator) -> list[int]:
    """``total`` split into ``parts`` sizes differing by at most one (which get +1: drawn)."""
    base, extra = divmod(total, parts)
    sizes = [base] * parts
    for i in rng.permutation(parts)[:extra]:
        sizes[int(i)] += 1
    return sizes


def block_hold_out(
    listing: Listing, items: list[Datum], val_fraction: float, dataset: str
) -> tuple[list[Datum], list[Datum]]:
    """(validation pool, K-shot pool) of one class under the ``blocks`` rule, in listing order.

    The pool has ``floor(val_fraction * n + 0.5)`` chips (at most ``n - 1``), as under
    ``random``, laid out as up to :data:`BLOCKS_PER_CLASS` blocks alternating with gaps of the
    remaining chips around the class's order (see the module docstring).
    """
    n = len(items)
    n_val = min(int(val_fraction * n + 0.5), max(n - 1, 0))
    if n_val == 0:
        return [], list(items)
    order, _ = class_order(listing, items)
    rng = numpy_rng(dataset, "val-blocks", items[0].classname)
    parts = min(BLOCKS_PER_CLASS, n_val, n - n_val)
    blocks, gaps = _near_equal(n_val, parts, rng), _near_equal(n - n_val, parts, rng)
    pos, held = int(rng.integers(n)), set()
    for block, gap in zip(blocks, gaps):
        held.update(order[(pos + i) % n] for i in range(block))
        pos += block + gap
    return (
        [d for i, d in enumerate(items) if i in held],
        [d for i, d in enumerate(items) if i not in held],
    )
