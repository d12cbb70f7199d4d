"""MSTAR SOC (10 classes) in the SAR-JEPA release layout: ``MSTAR_SOC/TRAIN|TEST/<class>/...``.

TRAIN holds the 17 deg chips, TEST the 15 deg chips. The class is the first folder under the split;
images in deeper folders (one per serial number in some copies) count for it. Folder spellings
``BRDM_2``/``BRDM2`` and ``ZSU_23_4``/``ZSU234`` (any case) map to the same class. A class folder
outside the ten is an error unless the ``extra_classes`` option (``DATASET.SAR.EXTRA_CLASSES``)
keeps it as an extra class. The train pool holds out 20 % of each class as a validation pool
before the K-shot draw, as in the release.

Class order (= label): the ten names sorted, :data:`MSTAR_CLASSES`. This is not the release's
order: its reader numbers the classes from a fixed dict (BMP2, BTR70, T72, BTR60, 2S1, BRDM2, D7,
T62, ZIL131, ZSU234; the three classes of the older 3-class MSTAR benchmark first). The toolkit
keeps the sorted order because its split draws and listing hashes follow the label order; the
accuracy of a cell does not depend on how the labels are numbered.
"""

from __future__ import annotations

from sarfewshot.data.base import Listing
from sarfewshot.data.listing import (
    FixedClassDataset,
    class_key,
    require_child_dir,
    require_root,
    resolve_root,
)
from sarfewshot.data.registry import DATASET_REGISTRY

# The toolkit's class order: the names sorted (the release numbers them differently, see above).
MSTAR_CLASSES = ("2S1", "BMP2", "BRDM2", "BTR60", "BTR70", "D7", "T62", "T72", "ZIL131", "ZSU234")


def mstar_class_key(name: str) -> str:
    """Spelling-independent key of an MSTAR class name: upper case, letters and digits only."""
    return class_key(name)


@DATASET_REGISTRY.register("mstar_soc", aliases=("mstar", "MSTAR_SOC"))
class MSTARSOC(FixedClassDataset):
    """MSTAR standard operating condition, 10 vehicle classes."""

    name = "mstar_soc"
    title = "MSTAR SOC"
    classes = MSTAR_CLASSES
    require_every_class = True
    layout = (
        "MSTAR_SOC/TRAIN/<class>/... and MSTAR_SOC/TEST/<class>/... (root: MSTAR_SOC or its parent)"
    )

    def list(self) -> Listing:
        """TRAIN and TEST images with the 10 canonical class names (then any extra classes)."""
        base = resolve_root(require_root(self.root, self.layout), "MSTAR_SOC")
        train, test = (
            require_child_dir(base, s, self.root, self.layout) for s in ("TRAIN", "TEST")
        )
        return self.train_test_listing(base, train, test)
