"""FUSAR-Ship as bundled with the SAR-JEPA release: ``New_FUSAR/Train|Val/<class>/``.

Val is the test set (there is no other). Classes are the Train folder's class folders, sorted;
each must be one of the release's ten (:data:`FUSAR_CLASSES`: Bridges, Cargo,
CoastalLands_island, Fishing, LandPatches, OtherShip, SeaClutterWaves, SeaPatches,
StrongFalseAlarms, Tanker; case and punctuation of the folder name do not matter). Another folder
is an error unless the ``extra_classes`` option (``DATASET.SAR.EXTRA_CLASSES``) keeps it as an
extra class. A subset of the ten is accepted. The sorted order is also the release's label order.
20 % of each train class is held out as a validation pool before the K-shot draw, as in the
release.
"""

from __future__ import annotations

from sarfewshot.data.base import Listing
from sarfewshot.data.listing import (
    FixedClassDataset,
    require_child_dir,
    require_root,
    resolve_root,
)
from sarfewshot.data.registry import DATASET_REGISTRY

FUSAR_CLASSES = (
    "Bridges",
    "Cargo",
    "CoastalLands_island",
    "Fishing",
    "LandPatches",
    "OtherShip",
    "SeaClutterWaves",
    "SeaPatches",
    "StrongFalseAlarms",
    "Tanker",
)


@DATASET_REGISTRY.register("fusar_ship", aliases=("fusar", "New_FUSAR"))
class FUSARShip(FixedClassDataset):
    """FUSAR-Ship ship/clutter chips, 10 classes; the Val folder is the test set."""

    name = "fusar_ship"
    title = "FUSAR-Ship"
    classes = FUSAR_CLASSES
    layout = (
        "New_FUSAR/Train/<class>/... and New_FUSAR/Val/<class>/... (root: New_FUSAR or its parent)"
    )

    def list(self) -> Listing:
        """Train folder = train pool, Val folder = test set."""
        base = resolve_root(require_root(self.root, self.layout), "New_FUSAR")
        train_dir = require_child_dir(base, "Train", self.root, self.layout)
        test_dir = require_child_dir(base, "Val", self.root, self.layout)
        return self.train_test_listing(base, train_dir, test_dir)
