"""Dassl's ``DataManager``: data loaders built from the config, batches as dicts.

Batches hold Dassl's keys: ``img`` (float32 ``(B, C, H, W)``), ``label`` (int64), ``domain``,
``impath`` and ``index``. Order is reproducible: the training loader shuffles with a
``torch.Generator`` seeded from ``(cfg.SEED, "train_loader")`` (a negative seed draws a fresh
one), worker processes are seeded from that generator, and evaluation loaders always read the
data in order (metrics do not depend on order, and records stay comparable), whatever
``DATALOADER.TEST.SAMPLER`` names.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from sarfewshot.data.base import DatasetBase, Datum
from sarfewshot.errors import ConfigError, DatasetError
from sarfewshot.utils.seeding import torch_generator

SAMPLERS = ("RandomSampler", "SequentialSampler")


class DatasetWrapper(Dataset):
    """Datum list -> batch dicts; Dassl's signature ``(cfg, data_source, transform, is_train)``.

    ``transform`` receives the image path (the toolkit's eval transform reads it with
    :func:`sarfewshot.data.io.read_sar`, keeping the file's nominal range) unless ``loader`` is
    given, in which case it receives ``loader(path)``.
    """

    def __init__(
        self,
        cfg: Any,
        data_source: Sequence[Datum],
        transform: Callable[[Any], torch.Tensor] | None = None,
        is_train: bool = False,
        loader: Callable[[str], Any] | None = None,
    ) -> None:
        if transform is None:
            raise ValueError("DatasetWrapper needs a transform that returns an image tensor")
        self.cfg = cfg
        self.data_source = list(data_source)
        self.transform = transform
        self.is_train = is_train
        self.loader = loader

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.data_source[index]
        source = self.loader(item.impath) if self.loader is not None else item.impath
        return {
            "img": self.transform(source),
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": index,
        }


class TensorImageDataset(Dataset):
    """Pre-decoded images ``(N, C, H, W)`` (uint8 = value / 255, or float) with labels."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: Any,
        impaths: Sequence[str] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.images = torch.as_tensor(images)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {self.labels.shape[0]} labels")
        self.impaths = list(impaths) if impaths is not None else [""] * len(self.labels)
        if len(self.impaths) != len(self.labels):
            raise ValueError(f"{len(self.impaths)} paths but {len(self.labels)} labels")
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        img = self.images[index]
        img = img.float().div(255.0) if img.dtype == torch.uint8 else img.float()
        if self.transform is not None:
            img = self.transform(img)
        return {
            "img": img,
            "label": int(self.labels[index]),
            "domain": 0,
            "impath": self.impaths[index],
            "index": index,
        }


def seed_worker(worker_id: int) -> None:
    """Seed a loader worker's Python and numpy states from its torch seed.

    torch gives worker ``i`` the seed ``base_seed + i``, with ``base_seed`` drawn from the
    loader's generator, so these seeds are reproducible too.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def loader_generator(seed: int, purpose: str) -> torch.Generator:
    """The generator of a loader: derived from ``(seed, purpose)``, or fresh when seed < 0."""
    if seed >= 0:
        return torch_generator(seed, purpose)
    gen = torch.Generator()
    gen.seed()
    return gen


def _check_sampler(name: str, key: str) -> str:
    if name not in SAMPLERS:
        raise ConfigError(f"{key} {name!r} is not supported; choose from {SAMPLERS}")
    return name


def build_data_loader(
    cfg: Any, dataset: Dataset, is_train: bool, sampler_type: str, batch_size: int
) -> DataLoader:
    """A DataLoader with Dassl's rules (``drop_last`` only when training on >= one batch)."""
    workers = int(cfg.DATALOADER.NUM_WORKERS)
    if workers < 0:
        raise ConfigError(f"DATALOADER.NUM_WORKERS must be >= 0, got {workers}")
    if batch_size < 1:
        raise ConfigError(f"DATALOADER batch size must be >= 1, got {batch_size}")
    purpose = "train_loader" if is_train else "test_loader"
    gen = loader_generator(int(cfg.SEED), purpose)
    if is_train and sampler_type == "RandomSampler":
        sampler: Any = RandomSampler(dataset, generator=gen)
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=is_train and len(dataset) >= batch_size,
        pin_memory=bool(cfg.USE_CUDA) and torch.cuda.is_available(),
        worker_init_fn=seed_worker,
        generator=gen,
    )


class DataManager:
    """Loaders for one dataset: ``train_loader_x``, ``val_loader``, ``test_loader``.

    Args:
        cfg: the config (``DATALOADER.*``, ``SEED``, ``USE_CUDA``; ``INPUT.*`` for the
            default transform).
        dataset: a :class:`DatasetBase` (default: ``sarfewshot.data.build.build_dataset(cfg)``).
        train_transform / test_transform: image transforms (default: the evaluation preset of
            ``INPUT.*``; the release trains without augmentation, so both default to it).
        dataset_wrapper: a Dassl-style wrapper class (default :class:`DatasetWrapper`).
    """

    def __init__(
        self,
        cfg: Any,
        dataset: DatasetBase | None = None,
        train_transform: Callable | None = None,
        test_transform: Callable | None = None,
        dataset_wrapper: type | None = None,
    ) -> None:
        if dataset is None:
            from sarfewshot.data.build import build_dataset

            dataset = build_dataset(cfg)
        if test_transform is None:
            from sarfewshot.data.transforms import build_eval_transform, spec_from_cfg

            test_transform = build_eval_transform(spec_from_cfg(cfg))
        train_transform = train_transform or test_transform
        wrapper = dataset_wrapper or DatasetWrapper

        def wrap(items: Any, transform: Callable, is_train: bool) -> Dataset | None:
            return wrapper(cfg, items, transform=transform, is_train=is_train) if items else None

        self._setup(
            cfg,
            dataset,
            wrap(dataset.train_x, train_transform, True),
            wrap(dataset.val, test_transform, False),
            wrap(dataset.test, test_transform, False),
            dataset.lab2cname,
            dataset.num_classes,
        )

    @classmethod
    def from_tensors(
        cls,
        cfg: Any,
        train_images: torch.Tensor,
        train_labels: Any,
        test_images: torch.Tensor,
        test_labels: Any,
        classnames: Sequence[str],
        val_images: torch.Tensor | None = None,
        val_labels: Any = None,
        train_impaths: Sequence[str] | None = None,
        test_impaths: Sequence[str] | None = None,
        val_impaths: Sequence[str] | None = None,
        train_transform: Callable | None = None,
    ) -> DataManager:
        """Loaders over pre-decoded image tensors ``(N, C, H, W)`` (uint8 means value / 255).

        ``impath`` in batches is the given path, or ``""``. ``num_classes`` is
        ``len(classnames)``; ``train_transform`` (optional) applies to float train images.
        """
        train = TensorImageDataset(train_images, train_labels, train_impaths, train_transform)
        test = TensorImageDataset(test_images, test_labels, test_impaths)
        val = None
        if val_images is not None and val_labels is not None and len(val_labels) > 0:
            val = TensorImageDataset(val_images, val_labels, val_impaths)
        names = list(classnames)
        for part, ds in (("train", train), ("val", val), ("test", test)):
            _check_labels(ds, len(names), part)
        dataset = DatasetBase(
            train_x=_datums(train, names), val=_datums(val, names), test=_datums(test, names)
        )
        dm = cls.__new__(cls)
        dm._setup(cfg, dataset, train, val, test, dict(enumerate(names)), len(names))
        return dm

    def _setup(
        self,
        cfg: Any,
        dataset: DatasetBase,
        train: Dataset | None,
        val: Dataset | None,
        test: Dataset | None,
        lab2cname: dict[int, str],
        num_classes: int,
    ) -> None:
        if train is None or len(train) == 0:
            raise DatasetError("the training set (train_x) is empty")
        _check_sampler(cfg.DATALOADER.TRAIN_X.SAMPLER, "DATALOADER.TRAIN_X.SAMPLER")
        _check_sampler(cfg.DATALOADER.TEST.SAMPLER, "DATALOADER.TEST.SAMPLER")
        self.cfg = cfg
        self.dataset = dataset
        self.num_classes = int(num_classes)
        self.num_source_domains = 1
        self.lab2cname = dict(lab2cname)
        self.classnames = [self.lab2cname.get(i, str(i)) for i in range(self.num_classes)]
        dl = cfg.DATALOADER
        self.train_loader_x = build_data_loader(
            cfg, train, True, dl.TRAIN_X.SAMPLER, int(dl.TRAIN_X.BATCH_SIZE)
        )
        self.train_loader_u = None
        test_bs = int(dl.TEST.BATCH_SIZE)
        self.val_loader = (
            build_data_loader(cfg, val, False, "", test_bs) if _nonempty(val) else None
        )
        self.test_loader = (
            build_data_loader(cfg, test, False, "", test_bs) if _nonempty(test) else None
        )

    def summary(self) -> str:
        """A short table of the dataset's sizes (Dassl's ``show_dataset_summary``)."""
        from tabulate import tabulate

        rows = [["Dataset", getattr(self.cfg.DATASET, "NAME", "") or "(tensors)"]]
        rows.append(["# classes", f"{self.num_classes:,}"])
        for name, loader in (
            ("# train_x", self.train_loader_x),
            ("# val", self.val_loader),
            ("# test", self.test_loader),
        ):
            rows.append([name, f"{len(loader.dataset):,}" if loader is not None else "0"])
        return tabulate(rows)

    def show_dataset_summary(self) -> None:
        """Print :meth:`summary`."""
        print(self.summary())


def _nonempty(ds: Dataset | None) -> bool:
    return ds is not None and len(ds) > 0


def _check_labels(ds: TensorImageDataset | None, num_classes: int, part: str) -> None:
    if ds is None or len(ds) == 0:
        return
    low, high = int(ds.labels.min()), int(ds.labels.max())
    if low < 0 or high >= num_classes:
        raise DatasetError(
            f"{part} labels range over [{low}, {high}] but there are {num_classes} class names"
        )


def _datums(ds: TensorImageDataset | None, names: list[str]) -> list[Datum] | None:
    if ds is None:
        return None
    return [
        Datum(impath=p, label=int(lab), classname=names[int(lab)])
        for p, lab in zip(ds.impaths, ds.labels.tolist())
    ]
