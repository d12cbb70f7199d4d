"""Helpers the dataset plug-ins share: folder discovery, class-name mapping, seeded pool splits.

A plug-in lists ``root/<split>/<class>/...`` trees with :func:`class_folder_items`, turns them
into a :class:`~sarfewshot.data.base.Listing` with :func:`make_listing`, and, for datasets
without an official test set, draws a fixed per-class train/test split with :func:`pool_split`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

from sarfewshot.data.base import Datum, Listing, SARDataset
from sarfewshot.data.io import find_images
from sarfewshot.errors import DatasetError
from sarfewshot.utils.progress import progress_enabled
from sarfewshot.utils.seeding import numpy_rng

IMAGE_KINDS = "jpg, jpeg, png, tif, tiff, bmp or raw MSTAR files"

# (relative path, class name) pairs, before labels are assigned.
Items = list[tuple[str, str]]


def progress(iterable: Iterable, desc: str = "", total: int | None = None, enabled: bool = True):
    """Wrap ``iterable`` in a tqdm bar, unless disabled or off (:func:`progress_enabled`)."""
    from tqdm import tqdm

    off = not (enabled and progress_enabled())
    return tqdm(iterable, desc=desc, total=total, disable=off, leave=False)


def find_child_dir(parent: Path, name: str) -> Path | None:
    """The sub-folder of ``parent`` named ``name`` (case-insensitive), or None."""
    if not parent.is_dir():
        return None
    exact = parent / name
    if exact.is_dir():
        return exact
    for child in sorted(parent.iterdir()):
        if child.is_dir() and child.name.lower() == name.lower():
            return child
    return None


def resolve_root(root: Path, bundle_folder: str) -> Path:
    """``root/<bundle_folder>`` when it exists (case-insensitive), else ``root`` itself."""
    return find_child_dir(root, bundle_folder) or root


def class_dirs(split_dir: Path) -> list[Path]:
    """Non-hidden sub-folders of ``split_dir``, sorted by name."""
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_folder_items(
    split_dir: Path,
    root: Path,
    canonical: Callable[[str], str] = str,
) -> Items:
    """``(path relative to root, class)`` for every image under ``split_dir/<class>/``.

    The class is the first folder under ``split_dir`` (mapped by ``canonical``); images in
    deeper sub-folders count for that class. An empty class folder is a ``DatasetError``.
    """
    items: Items = []
    for folder in class_dirs(split_dir):
        files = find_images(folder)
        if not files:
            raise DatasetError(f"class folder {folder} holds no images ({IMAGE_KINDS})")
        cname = canonical(folder.name)
        items += [(p.relative_to(root).as_posix(), cname) for p in files]
    return items


EXTRA_CLASSES_KEY = "DATASET.SAR.EXTRA_CLASSES"


def class_key(name: str) -> str:
    """Spelling-independent key of a class name: upper case, letters and digits only."""
    return re.sub(r"[^0-9A-Z]", "", name.upper())


def option_flag(value: object, name: str) -> bool:
    """A plug-in option given as a bool, 0/1 or ``true``/``false`` text (``--option KEY=VALUE``)."""
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return text in ("true", "yes", "on", "1")
    raise DatasetError(f"dataset option {name}={value!r} must be true or false")


def fixed_classes(
    dataset: str, classes: Iterable[str], split_dir: Path, allow_extra: bool = False
) -> Callable[[str], str]:
    """A folder-name -> class mapper for a dataset with a fixed class list.

    Folder names match a class whatever their case and punctuation (``BRDM_2`` is ``BRDM2``);
    a folder outside the list is a ``DatasetError`` naming it and the expected classes, unless
    ``allow_extra`` (the ``extra_classes`` option, ``DATASET.SAR.EXTRA_CLASSES``) keeps it as an
    extra class under its own folder name.
    """
    by_key = {class_key(c): c for c in classes}

    def canonical(folder_name: str) -> str:
        found = by_key.get(class_key(folder_name))
        if found is not None:
            return found
        if allow_extra:
            return folder_name
        raise DatasetError(
            f"class folder {split_dir / folder_name} is not one of the {dataset} classes "
            f"({', '.join(by_key.values())}); remove or rename it, or set "
            f"{EXTRA_CLASSES_KEY} True (--option extra_classes=true) to keep it as an extra class"
        )

    return canonical


class FixedClassDataset(SARDataset):
    """A plug-in whose class folders must come from the fixed list ``classes``.

    The ``extra_classes`` option (``DATASET.SAR.EXTRA_CLASSES``) lets other folders through as
    extra classes, listed after the fixed ones.
    """

    classes: ClassVar[tuple[str, ...]] = ()
    title: ClassVar[str] = ""  # the dataset's usual name, for messages
    #: every class of ``classes`` must have a folder in both splits (MSTAR SOC's benchmark)
    require_every_class: ClassVar[bool] = False

    @classmethod
    def options_from_cfg(cls, cfg: Any) -> dict:
        """``{"extra_classes": True}`` when ``DATASET.SAR.EXTRA_CLASSES`` is set, else nothing."""
        sar = getattr(getattr(cfg, "DATASET", None), "SAR", None)
        return {"extra_classes": True} if getattr(sar, "EXTRA_CLASSES", False) else {}

    @property
    def allow_extra(self) -> bool:
        """Whether class folders outside ``classes`` are kept (the ``extra_classes`` option)."""
        return option_flag(self.options.get("extra_classes", False), "extra_classes")

    def class_mapper(self, split_dir: Path) -> Callable[[str], str]:
        """The folder-name -> class mapper for the class folders under ``split_dir``."""
        label = f"{self.title} ({self.name})" if self.title else self.name
        return fixed_classes(label, self.classes, split_dir, self.allow_extra)

    def train_test_listing(self, base: Path, train_dir: Path, test_dir: Path) -> Listing:
        """The listing of ``train_dir/<class>/`` (pool) and ``test_dir/<class>/`` (test set).

        Raises:
            DatasetError: the train folder has no class folder, a test class has no train
                folder, or (with :attr:`require_every_class`) a split lacks a class of
                ``classes`` (the folder names are checked by :meth:`class_mapper`).
        """
        train = self._split_items(base, train_dir)
        test = self._split_items(base, test_dir)
        if not train:
            raise DatasetError(f"{train_dir}: no class folders; expected {self.layout}")
        test_only = sorted({c for _, c in test} - {c for _, c in train})
        if test_only:
            raise DatasetError(
                f"{test_dir} has class folder(s) {test_only} {train_dir.name} lacks; "
                f"expected {self.layout}"
            )
        return make_listing(base, train, test, preferred=self.classes)

    def _split_items(self, base: Path, split_dir: Path) -> Items:
        items = class_folder_items(split_dir, base, self.class_mapper(split_dir))
        if self.require_every_class:
            present = {cls for _, cls in items}
            missing = [c for c in self.classes if c not in present]
            if missing:
                label = self.title or self.name
                raise DatasetError(f"{split_dir} lacks the {label} class folder(s) {missing}")
        return items


def require_root(root: Path, layout: str) -> Path:
    """Return ``root`` when it is a folder, else raise ``DatasetError`` naming it and the layout."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DatasetError(f"dataset root {root} {what}; expected layout: {layout}")
    return root


def require_child_dir(parent: Path, name: str, root: Path, expected: str) -> Path:
    """``parent/<name>`` (case-insensitive), else a ``DatasetError`` naming root and layout."""
    found = find_child_dir(parent, name)
    if found is None:
        raise DatasetError(
            f"dataset root {root} does not have the expected layout ({parent / name} is "
            f"missing): expected {expected}"
        )
    return found


def ordered_classes(names: Iterable[str], preferred: Iterable[str] = ()) -> list[str]:
    """Class names in ``preferred`` order first, then the others sorted."""
    names = set(names)
    first = [c for c in preferred if c in names]
    return first + sorted(names - set(first))


def to_datums(items: Items, classnames: list[str]) -> list[Datum]:
    """Datums (label = index in ``classnames``) sorted by relative path."""
    index = {c: i for i, c in enumerate(classnames)}
    return [Datum(impath=p, label=index[c], classname=c) for p, c in sorted(items)]


def make_listing(
    root: Path,
    train: Items,
    test: Items,
    preferred: Iterable[str] = (),
    extra: dict | None = None,
) -> Listing:
    """A listing whose classes are every class seen (``preferred`` order, then sorted)."""
    classnames = ordered_classes({c for _, c in train} | {c for _, c in test}, preferred)
    return Listing(
        root=root,
        classnames=classnames,
        train=to_datums(train, classnames),
        test=to_datums(test, classnames),
        extra=dict(extra or {}),
    )


def pool_split(items: Items, train_fraction: float, seed: int, dataset: str) -> tuple[Items, Items]:
    """A fixed per-class train/test split of ``items`` for datasets without an official one.

    Classes are visited in sorted order and files in sorted order; one generator
    ``numpy_rng(seed, dataset, "pool")`` permutes each class, and the first
    ``max(1, floor(train_fraction * n + 0.5))`` files of the permutation go to train (at most
    ``n - 1`` when the class has two or more files, so every class keeps a test image).
    The split depends only on the sorted file list, so every machine and every run gets it.
    """
    rng = numpy_rng(seed, dataset, "pool")
    by_class: dict[str, list[str]] = {}
    for path, cname in sorted(items):
        by_class.setdefault(cname, []).append(path)
    train: Items = []
    test: Items = []
    for cname in sorted(by_class):
        paths = by_class[cname]
        n = len(paths)
        n_train = max(1, int(train_fraction * n + 0.5))
        if n >= 2:
            n_train = min(n_train, n - 1)
        perm = rng.permutation(n)
        train += [(paths[i], cname) for i in perm[:n_train]]
        test += [(paths[i], cname) for i in perm[n_train:]]
    return train, test


def pool_rule(seed: int, train_fraction: float, dataset: str) -> dict:
    """The ``Listing.extra["pool_split"]`` record of an automatic split (saved next to splits)."""
    return {
        "rule": f"per-class seeded draw: numpy_rng({seed}, {dataset!r}, 'pool'), "
        f"{train_fraction:g} of each class to train, the rest to test",
        "seed": seed,
        "train_fraction": train_fraction,
    }
