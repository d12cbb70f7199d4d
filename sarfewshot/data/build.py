"""From a dataset name (or a config) to a listing, a few-shot split and a Dassl ``DatasetBase``."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

from sarfewshot.data.base import DatasetBase, Datum, Listing, SARDataset
from sarfewshot.data.registry import get_dataset
from sarfewshot.data.splits import FewShotSplit, load_or_make_split
from sarfewshot.errors import ConfigError


def build_listing(name: str, root: str | os.PathLike, **options: Any) -> tuple[SARDataset, Listing]:
    """Instantiate the plug-in registered as ``name`` on ``root`` and list it.

    Raises:
        UnknownNameError: an unknown dataset (the message lists the available ones).
        DatasetError: a missing root or a wrong layout (naming the root and the expected layout).
    """
    dataset = get_dataset(name)(Path(root).expanduser(), **options)
    return dataset, dataset.list()


def split_name(dataset: SARDataset) -> str:
    """The name a dataset's split files and random streams use (a variant name if it has one)."""
    return getattr(dataset, "split_name", dataset.name)


def _cfg(cfg: Any, dotted: str, default: Any) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part, None)
        if node is None:
            return default
    return node


def dataset_options(name: str, cfg: Any) -> dict:
    """Plug-in options a config sets (e.g. SAMPLE's ``DATASET.SAR.SAMPLE_MODE``, or
    ``extra_classes`` from ``DATASET.SAR.EXTRA_CLASSES`` for datasets with a fixed class list)."""
    from_cfg = getattr(get_dataset(name), "options_from_cfg", None)
    return from_cfg(cfg) if from_cfg else {}


def build_split(cfg: Any) -> tuple[SARDataset, Listing, FewShotSplit]:
    """The listing and the (reused or drawn) split a config asks for.

    Keys: ``DATASET.NAME``, ``DATASET.ROOT``, ``DATASET.NUM_SHOTS`` (<= 0: the whole train pool),
    ``SEED``, ``DATASET.SPLIT_DIR`` (default ``<OUTPUT_DIR>/splits``), ``DATASET.VAL_POOL``
    (< 0: the dataset's default), ``DATASET.VAL_POOL_RULE``, ``DATASET.REPEAT``,
    ``DATASET.ALLOW_SHORT_CLASSES``.
    """
    name, root = _cfg(cfg, "DATASET.NAME", ""), _cfg(cfg, "DATASET.ROOT", "")
    if not name:
        raise ConfigError("DATASET.NAME is empty; set it to a dataset name (sarfewshot data list)")
    if not root:
        raise ConfigError(f"DATASET.ROOT is empty; set it to the folder holding {name}")
    dataset, listing = build_listing(name, root, **dataset_options(name, cfg))
    shots = int(_cfg(cfg, "DATASET.NUM_SHOTS", -1))
    seed = int(_cfg(cfg, "SEED", -1))
    if seed < 0:
        if shots > 0:
            warnings.warn(
                f"SEED {seed} (unseeded): the few-shot split is drawn with seed 0",
                UserWarning,
                stacklevel=2,
            )
        seed = 0
    val_pool = float(_cfg(cfg, "DATASET.VAL_POOL", -1.0))
    split_dir = _cfg(cfg, "DATASET.SPLIT_DIR", "") or os.path.join(
        _cfg(cfg, "OUTPUT_DIR", "./output"), "splits"
    )
    split = load_or_make_split(
        Path(split_dir).expanduser(),
        listing,
        split_name(dataset),
        seed,
        shots,
        val_pool if val_pool >= 0 else dataset.val_fraction,
        repeat=bool(_cfg(cfg, "DATASET.REPEAT", False)),
        allow_short=bool(_cfg(cfg, "DATASET.ALLOW_SHORT_CLASSES", False)),
        val_rule=str(_cfg(cfg, "DATASET.VAL_POOL_RULE", "random")),
    )
    return dataset, listing, split


def absolute(listing: Listing, items: list[Datum]) -> list[Datum]:
    """Copies of ``items`` whose ``impath`` is absolute (joined onto the listing root)."""
    return [dataclasses.replace(d, impath=os.path.abspath(listing.abspath(d))) for d in items]


def build_dataset(cfg: Any) -> DatasetBase:
    """The Dassl path: config -> listing -> split -> ``DatasetBase(train_x, val, test)``.

    ``Datum.impath`` values are absolute paths, as Dassl's data loaders expect.
    """
    _, listing, split = build_split(cfg)
    return DatasetBase(
        train_x=absolute(listing, split.train),
        val=absolute(listing, split.val),
        test=absolute(listing, split.test),
    )
