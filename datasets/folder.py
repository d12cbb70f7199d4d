"""Any image tree: ``root/<class>/...`` or ``root/train|test/<class>/...``.

Classes are the class folders, sorted (the union of train and test). Without a test folder the
images are split once per class: 70 % train pool, 30 % test, drawn by
``numpy_rng(FOLDER_POOL_SEED, "folder", "pool")`` over the sorted file list (the same split on
every machine; written to ``<split_dir>/<split name>/pool_split.json`` when splits are drawn).
Folder names ``train``/``test`` are matched case-insensitively; ``val`` is not special.
"""

from __future__ import annotations

from sarfewshot.data.base import Listing, SARDataset
from sarfewshot.data.io import find_images
from sarfewshot.data.listing import (
    Items,
    class_folder_items,
    find_child_dir,
    make_listing,
    pool_rule,
    pool_split,
    require_root,
)
from sarfewshot.data.registry import DATASET_REGISTRY
from sarfewshot.errors import DatasetError

FOLDER_POOL_SEED = 0
FOLDER_TRAIN_FRACTION = 0.7


def folder_listing(dataset: SARDataset, stream: str = "folder") -> Listing:
    """List ``dataset.root`` in the folder layout (shared by the synthetic dataset)."""
    root = require_root(dataset.root, dataset.layout)
    train_dir, test_dir = find_child_dir(root, "train"), find_child_dir(root, "test")
    if test_dir is not None and train_dir is None:
        raise DatasetError(
            f"dataset root {root} has a test folder but no train folder; expected {dataset.layout}"
        )
    items = class_folder_items(train_dir or root, root)
    if not items:
        loose = "images but no class folders" if find_images(root, recursive=False) else "nothing"
        raise DatasetError(f"dataset root {root} holds {loose}; expected {dataset.layout}")
    if test_dir is not None:
        return make_listing(root, items, _test_items(test_dir, root, items))
    train, test = pool_split(items, FOLDER_TRAIN_FRACTION, FOLDER_POOL_SEED, stream)
    rule = pool_rule(FOLDER_POOL_SEED, FOLDER_TRAIN_FRACTION, stream)
    return make_listing(root, train, test, extra={"pool_split": rule})


def _test_items(test_dir, root, train: Items) -> Items:
    test = class_folder_items(test_dir, root)
    unknown = sorted({c for _, c in test} - {c for _, c in train})
    if unknown:
        raise DatasetError(f"{test_dir} has class folder(s) {unknown} that the train folder lacks")
    return test


@DATASET_REGISTRY.register("folder", aliases=("imagefolder",))
class ImageFolder(SARDataset):
    """A generic class-folder tree, with or without train/test folders."""

    name = "folder"
    layout = "root/<class>/<images> or root/train/<class>/... with optional root/test/<class>/..."

    @property
    def split_name(self) -> str:
        """Split folder name: ``folder-<root folder name>``, so two trees keep separate splits."""
        return f"{self.name}-{self.root.resolve().name}"

    def list(self) -> Listing:
        """The tree's listing (automatic 70/30 split when there is no test folder)."""
        return folder_listing(self)
