"""MSTAR SOC (10 classes) in the SAR-JEPA release layout: ``MSTAR_SOC/TRAIN|TEST/<class>/...``.

TRAIN holds the 17 deg chips, TEST the 15 deg chips. The class is the first folder under the split;
images in deeper folders (one per serial number in some copies) count for it. Folder spellings
``BRDM_2``/``BRDM2`` and ``ZSU_23_4``/``ZSU234`` (any case) map to the same class. The train pool
holds out 20 % of each class as a validation pool before the K-shot draw, as in the release.
"""

from __future__ import annotations

import re

from sarfewshot.data.base import Listing, SARDataset
from sarfewshot.data.listing import (
    class_folder_items,
    make_listing,
    require_child_dir,
    require_root,
    resolve_root,
)
from sarfewshot.data.registry import DATASET_REGISTRY
from sarfewshot.errors import DatasetError

# The release's class order (its folders sorted by name).
MSTAR_CLASSES = ("2S1", "BMP2", "BRDM2", "BTR60", "BTR70", "D7", "T62", "T72", "ZIL131", "ZSU234")


def mstar_class_key(name: str) -> str:
    """Spelling-independent key of an MSTAR class name: upper case, letters and digits only."""
    return re.sub(r"[^0-9A-Z]", "", name.upper())


@DATASET_REGISTRY.register("mstar_soc", aliases=("mstar", "MSTAR_SOC"))
class MSTARSOC(SARDataset):
    """MSTAR standard operating condition, 10 vehicle classes."""

    name = "mstar_soc"
    val_fraction = 0.2
    crop_size = 128
    layout = (
        "MSTAR_SOC/TRAIN/<class>/... and MSTAR_SOC/TEST/<class>/... (root: MSTAR_SOC or its parent)"
    )

    def _canonical(self, folder_name: str) -> str:
        key = mstar_class_key(folder_name)
        if key not in MSTAR_CLASSES:
            raise DatasetError(
                f"unknown MSTAR SOC class folder {folder_name!r} under {self.root}; expected "
                f"{', '.join(MSTAR_CLASSES)} (BRDM_2 and ZSU_23_4 spellings accepted)"
            )
        return key

    def list(self) -> Listing:
        """TRAIN and TEST images with the 10 canonical class names."""
        base = resolve_root(require_root(self.root, self.layout), "MSTAR_SOC")
        folders = {s: require_child_dir(base, s, self.root, self.layout) for s in ("TRAIN", "TEST")}
        items = {}
        for split, folder in folders.items():
            items[split] = class_folder_items(folder, base, self._canonical)
            missing = [c for c in MSTAR_CLASSES if c not in {cls for _, cls in items[split]}]
            if missing:
                raise DatasetError(f"{folder} lacks the MSTAR SOC class folder(s) {missing}")
        return make_listing(base, items["TRAIN"], items["TEST"], preferred=MSTAR_CLASSES)
