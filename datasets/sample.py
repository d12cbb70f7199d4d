"""SAMPLE (Lewis et al. 2019): measured and synthetic MSTAR-like chips of 10 vehicles.

Public layout: ``[SAMPLE_dataset_public/]png_images/<decibel|qpm>/<real|synth>/<class>/*.png``;
``root`` may be the folder above ``png_images``, ``png_images`` itself, or its parent bundle.

Options (``DATASET.SAR.SAMPLE_MODE`` / ``SAMPLE_FORMAT``):

- ``mode="measured"``: real chips only; ``mode="synthetic"``: synthetic chips only. Both split by
  elevation when every file name carries ``elevDeg_<NNN>`` (the public naming): 17 deg is the
  train pool and 14-16 deg the test set, as MSTAR's 17/15 deg convention. Otherwise a fixed
  seeded per-class split (70 % train, ``numpy_rng(SAMPLE_POOL_SEED, "sample_<mode>", "pool")``).
- ``mode="synth2real"``: train on every synthetic chip, test on every measured chip.
- ``format="decibel"`` (default) or ``"qpm"`` picks the image folder.

Operating conditions (``sarfewshot eval --conditions``): ``synth2real`` names ``id`` (the
validation pool: synthetic chips that no support set holds) and ``measured`` (the test set, every
measured chip); the other modes name ``id`` (their test set).
"""

from __future__ import annotations

import re
from pathlib import Path

from sarfewshot.data.base import ID_CONDITION, Listing, SARDataset, TestCondition
from sarfewshot.data.listing import (
    Items,
    class_folder_items,
    find_child_dir,
    make_listing,
    pool_rule,
    pool_split,
    require_child_dir,
    require_root,
)
from sarfewshot.data.registry import DATASET_REGISTRY
from sarfewshot.errors import ConfigError, DatasetError

SAMPLE_MODES = ("measured", "synthetic", "synth2real")
SAMPLE_FORMATS = ("decibel", "qpm")
SAMPLE_POOL_SEED = 2019
SAMPLE_TRAIN_FRACTION = 0.7
TRAIN_ELEVATION = 17
_ELEVATION = re.compile(r"elevDeg_(\d+)", re.IGNORECASE)


def elevation_of(relpath: str) -> int | None:
    """The elevation (degrees) in a SAMPLE file name, or None."""
    m = _ELEVATION.search(Path(relpath).name)
    return int(m.group(1)) if m else None


@DATASET_REGISTRY.register("sample", aliases=("SAMPLE",))
class SAMPLE(SARDataset):
    """SAMPLE chips: measured-only, synthetic-only or train-synthetic/test-measured."""

    name = "sample"
    layout = "png_images/<decibel|qpm>/<real|synth>/<class>/*.png (root: png_images or a parent)"

    def __init__(self, root, mode: str = "measured", format: str = "decibel", **options) -> None:
        super().__init__(root, mode=mode, format=format, **options)
        self.mode, self.format = str(mode).lower(), str(format).lower()
        if self.mode not in SAMPLE_MODES:
            raise ConfigError(
                f"SAMPLE mode {mode!r} (DATASET.SAR.SAMPLE_MODE) is not one of {SAMPLE_MODES}"
            )
        if self.format not in SAMPLE_FORMATS:
            raise ConfigError(
                f"SAMPLE format {format!r} (DATASET.SAR.SAMPLE_FORMAT) is not one "
                f"of {SAMPLE_FORMATS}"
            )

    @classmethod
    def options_from_cfg(cls, cfg) -> dict:
        """Plug-in options from ``DATASET.SAR.SAMPLE_MODE`` and ``SAMPLE_FORMAT``."""
        sar = getattr(cfg.DATASET, "SAR", None)
        return {
            "mode": getattr(sar, "SAMPLE_MODE", "measured"),
            "format": getattr(sar, "SAMPLE_FORMAT", "decibel"),
        }

    @property
    def split_name(self) -> str:
        """Name of this variant's split folder and random streams."""
        return f"{self.name}_{self.mode}_{self.format}"

    def plain_condition(self) -> str:
        """``synth2real``'s plain run scores the measured chips (``measured``); else ``id``."""
        return "measured" if self.mode == "synth2real" else ID_CONDITION

    def test_conditions(self, listing: Listing) -> list[TestCondition]:
        """``synth2real``: ``id`` (held-out synthetic chips) and ``measured``; else ``id``."""
        if self.mode != "synth2real":
            return super().test_conditions(listing)
        return [
            TestCondition(ID_CONDITION, "validation pool of the synthetic chips", part="val"),
            TestCondition("measured", "every measured chip (synthetic -> real)", part="test"),
        ]

    def _png_images(self) -> Path:
        root = require_root(self.root, self.layout)
        for candidate in (root, find_child_dir(root, "SAMPLE_dataset_public") or root):
            found = find_child_dir(candidate, "png_images")
            if found is not None:
                return found
        return root

    def list(self) -> Listing:
        """The listing of the chosen mode and format (see the module docstring)."""
        base = require_child_dir(self._png_images(), self.format, self.root, self.layout)
        canonical = str.lower
        sources = {}
        for kind in ("real", "synth"):
            if self.mode == "measured" and kind == "synth":
                continue
            if self.mode == "synthetic" and kind == "real":
                continue
            folder = require_child_dir(base, kind, self.root, self.layout)
            sources[kind] = class_folder_items(folder, base, canonical)
            if not sources[kind]:
                raise DatasetError(f"{folder} has no class folders; expected {self.layout}")
        if self.mode == "synth2real":
            return make_listing(base, sources["synth"], sources["real"])
        return self._split_one(base, next(iter(sources.values())))

    def _split_one(self, base: Path, items: Items) -> Listing:
        elevations = [elevation_of(p) for p, _ in items]
        if all(e is not None for e in elevations):
            train = [it for it, e in zip(items, elevations) if e == TRAIN_ELEVATION]
            test = [it for it, e in zip(items, elevations) if e != TRAIN_ELEVATION]
            if train and test:
                rule = {"rule": f"by elevation: {TRAIN_ELEVATION} deg train, others test"}
                return make_listing(base, train, test, extra={"pool_split": rule})
        stream = f"{self.name}_{self.mode}"
        train, test = pool_split(items, SAMPLE_TRAIN_FRACTION, SAMPLE_POOL_SEED, stream)
        rule = pool_rule(SAMPLE_POOL_SEED, SAMPLE_TRAIN_FRACTION, stream)
        return make_listing(base, train, test, extra={"pool_split": rule})
