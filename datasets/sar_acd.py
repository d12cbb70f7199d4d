"""SAR-ACD aircraft chips: ``SAR_ACD/images/<class>/*.jpg``.

Classes: the release's five, :data:`SAR_ACD_CLASSES` (A220, A330, ARJ21, Boeing737, Boeing787,
sorted, which is also the release's label order; case and punctuation of the folder name do not
matter). Another class folder is an error unless the ``extra_classes`` option
(``DATASET.SAR.EXTRA_CLASSES``) keeps it as an extra class; a subset of the five is accepted.

The dataset has no official split. The release re-drew a 10 % train / 90 % test split per seed;
here it is fixed once: per class (sorted), files sorted, one generator
``numpy_rng(SAR_ACD_POOL_SEED, "sar_acd", "pool")`` permutes each class and the first 10 %
(rounded, at least one) form the train pool. The split depends only on the file list, so every
seed, method and machine sees the same test set; it is also written to
``<split_dir>/sar_acd/pool_split.json`` when splits are drawn. No validation pool is held out
(the train pool is small) unless ``DATASET.VAL_POOL`` asks for one.
"""

from __future__ import annotations

from sarfewshot.data.base import Listing
from sarfewshot.data.listing import (
    FixedClassDataset,
    class_folder_items,
    make_listing,
    pool_rule,
    pool_split,
    require_child_dir,
    require_root,
    resolve_root,
)
from sarfewshot.data.registry import DATASET_REGISTRY
from sarfewshot.errors import DatasetError

SAR_ACD_POOL_SEED = 2024  # documented constant of the fixed train/test split
SAR_ACD_TRAIN_FRACTION = 0.1
SAR_ACD_CLASSES = ("A220", "A330", "ARJ21", "Boeing737", "Boeing787")


@DATASET_REGISTRY.register("sar_acd", aliases=("SAR_ACD", "sar-acd"))
class SARACD(FixedClassDataset):
    """SAR-ACD civil aircraft, fixed 10 % / 90 % per-class train/test split."""

    name = "sar_acd"
    val_fraction = 0.0
    title = "SAR-ACD"
    classes = SAR_ACD_CLASSES
    layout = "SAR_ACD/images/<class>/... (root: SAR_ACD or its parent)"

    def list(self) -> Listing:
        """The fixed pool split of ``images/<class>``."""
        base = resolve_root(require_root(self.root, self.layout), "SAR_ACD")
        images = require_child_dir(base, "images", self.root, self.layout)
        items = class_folder_items(images, base, self.class_mapper(images))
        if not items:
            raise DatasetError(f"{images} has no class folders; expected {self.layout}")
        train, test = pool_split(items, SAR_ACD_TRAIN_FRACTION, SAR_ACD_POOL_SEED, self.name)
        rule = pool_rule(SAR_ACD_POOL_SEED, SAR_ACD_TRAIN_FRACTION, self.name)
        return make_listing(
            base, train, test, preferred=SAR_ACD_CLASSES, extra={"pool_split": rule}
        )
