"""Dassl-shaped data objects (``Datum``, ``DatasetBase``) and the SAR dataset plug-in base.

A plug-in (one module per dataset under ``datasets/``) subclasses :class:`SARDataset` and
implements :meth:`SARDataset.list`, which returns a :class:`Listing`: every labelled image the
dataset offers, before any few-shot draw. Few-shot splits (``sarfewshot.data.splits``) are drawn
from a listing; ``DatasetBase`` objects are built from a split for Dassl-style trainers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from sarfewshot.utils.io import sha256_text


@dataclass(frozen=True)
class Datum:
    """One labelled image, as in Dassl: read-only ``impath``, ``label``, ``domain``, ``classname``.

    ``impath`` is relative to the listing root inside a :class:`Listing`, absolute elsewhere.
    """

    impath: str
    label: int = 0
    domain: int = 0
    classname: str = ""


class DatasetBase:
    """Dassl's dataset container: ``train_x``, ``train_u``, ``val``, ``test`` lists of Datum.

    ``num_classes``, ``lab2cname`` and ``classnames`` are derived from ``train_x`` as in Dassl.
    """

    def __init__(
        self,
        train_x: list[Datum] | None = None,
        train_u: list[Datum] | None = None,
        val: list[Datum] | None = None,
        test: list[Datum] | None = None,
    ) -> None:
        self._train_x = list(train_x or [])
        self._train_u = train_u
        self._val = val
        self._test = test
        self._lab2cname = {d.label: d.classname for d in self._train_x}

    train_x = property(lambda self: self._train_x)
    train_u = property(lambda self: self._train_u)
    val = property(lambda self: self._val)
    test = property(lambda self: self._test)
    lab2cname = property(lambda self: dict(sorted(self._lab2cname.items())))
    classnames = property(lambda self: [c for _, c in sorted(self._lab2cname.items())])

    @property
    def num_classes(self) -> int:
        """Number of classes: ``max label + 1`` over ``train_x`` (Dassl's rule)."""
        return max(self._lab2cname) + 1 if self._lab2cname else 0


@dataclass
class Listing:
    """Every labelled image of a dataset, with paths relative to ``root``.

    Attributes:
        root: the dataset folder that ``Datum.impath`` values are relative to.
        classnames: class names, index = label.
        train: the train folder's images (the pool few-shot draws come from).
        test: the test images (the whole test set every cell is scored on).
    """

    root: Path
    classnames: list[str]
    train: list[Datum]
    test: list[Datum]
    extra: dict = field(default_factory=dict)

    def abspath(self, datum: Datum) -> str:
        """Absolute path of a datum of this listing."""
        return os.path.join(self.root, datum.impath)

    def sha256(self) -> str:
        """Hash of the sorted (split, path, label) lines; it changes when the folder does."""
        lines = [f"train\t{d.impath}\t{d.label}" for d in self.train]
        lines += [f"test\t{d.impath}\t{d.label}" for d in self.test]
        lines.sort()
        return sha256_text("\n".join(["classes\t" + "\t".join(self.classnames), *lines]))


ID_CONDITION = "id"
CONDITION_PARTS = ("test", "val", "extra")


@dataclass(frozen=True)
class TestCondition:
    """A named test set of a dataset setting (an operating condition).

    Attributes:
        name: the condition's name in keys and tables (``id`` is the in-distribution one).
        what: one line saying what differs from the training data.
        part: where its images come from: ``test`` (the listing's test set), ``val`` (the
            validation pool: images of the training condition that no support set holds, the
            in-distribution test set of a setting whose test set is out of distribution) or
            ``extra`` (``items``, outside the listing).
        items: the images of an ``extra`` condition, relative to the listing root.
    """

    name: str
    what: str
    part: str = "test"
    items: tuple[Datum, ...] = ()


class SARDataset:
    """Base class of dataset plug-ins (register with ``@DATASET_REGISTRY.register(...)``).

    Class attributes:
        name: canonical registry name.
        val_fraction: share of each train class held out as a validation pool before the
            K-shot draw (the release holds out 20 % for MSTAR and FUSAR).
        crop_size: centre-crop size of the evaluation preset (128 in the release), or None.
    """

    name: ClassVar[str] = ""
    val_fraction: ClassVar[float] = 0.2
    crop_size: ClassVar[int | None] = 128

    def __init__(self, root: str | os.PathLike, **options) -> None:
        self.root = Path(root)
        self.options = options

    @property
    def split_name(self) -> str:
        """Name used for this dataset's split files (plug-ins with options make it unique)."""
        return self.name

    def list(self) -> Listing:
        """Return the dataset's listing; raise ``DatasetError`` naming the root on a bad layout."""
        raise NotImplementedError

    def test_conditions(self, listing: Listing) -> list[TestCondition]:
        """The setting's named test sets, the in-distribution one (``id``) first.

        Default: the test set is in distribution (``id``). Settings whose test set differs from
        the training data (ATRNet-STAR's EOC settings, SAMPLE's ``synth2real``) name it and
        their per-condition subsets, and score ``id`` on the validation pool.
        """
        return [TestCondition(ID_CONDITION, "the test set (same conditions as training)")]

    def plain_condition(self) -> str:
        """The condition a plain run (no ``--conditions``) scores: its test set's name among
        :meth:`test_conditions` (``id`` unless the setting's test set is out of distribution)."""
        return ID_CONDITION
