"""Data and caches: decoded images and frozen features shared by every cell, splits, and each
cell's view of them (:class:`~sarfewshot.engine.protocol.CellData`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sarfewshot.engine.grid.plan import Printer
from sarfewshot.engine.grid.resolve import ResolvedBackbone, ResolvedDataset
from sarfewshot.engine.protocol import REQUIRES_FEATURES, REQUIRES_IMAGES, CellData, TestSet
from sarfewshot.errors import ConfigError, SarFewShotError
from sarfewshot.utils.io import load_array, save_array, sha256_text

FEATURE_CACHE_VERSION = 2  # 2: keyed on the dataset fingerprint, not the file names

# ----------------------------------------------------------------------------- shared tensors


class SharedData:
    """In-process and on-disk caches of decoded images and frozen features.

    Images: one tensor per (dataset, preprocessing), rows = listing train pool then test set.
    Features: one float32 array per (backbone, listing, preprocessing, precision), same
    rows, saved as ``.npy`` (``allow_pickle=False``, written atomically) with a JSON manifest.
    """

    def __init__(
        self,
        output: Path,
        device: str,
        progress: bool,
        use_disk: bool = True,
        refresh: bool = False,
    ) -> None:
        self.cache_dir = Path(output) / "cache"
        self.device = device
        self.progress = progress
        self.use_disk = use_disk
        self.refresh = refresh  # --force: rebuild (and rewrite) every disk cache this run uses
        self._images: dict[tuple[str, str], Any] = {}
        self._features: dict[str, np.ndarray] = {}

    def images(self, dataset: ResolvedDataset, spec: Any) -> Any:
        """The dataset's preprocessed images for ``spec`` (decoded once, then cached)."""
        from sarfewshot.data.cache import load_image_tensor

        key = (dataset.name, spec.key())
        if key not in self._images:
            # Only one dataset's images are held at a time: cells run dataset by dataset.
            # (a dataset's extra condition sets, "<name>#<condition>", count as that dataset)
            family = dataset.name.split("#")[0]
            self._images = {k: v for k, v in self._images.items() if k[0].split("#")[0] == family}
            name = f"{dataset.name}-{dataset.version[:12]}-{spec.key()}.npy"
            cache_file = self.cache_dir / "images" / name if self.use_disk else None
            self._images[key] = load_image_tensor(
                dataset.paths,
                spec,
                cache_file=cache_file,
                progress=self.progress,
                version=dataset.version,
                refresh=self.refresh,
            )
        return self._images[key]

    def features(
        self,
        backbone: ResolvedBackbone,
        dataset: ResolvedDataset,
        spec: Any,
        batch_size: int,
        precision: str = "fp32",
    ) -> np.ndarray:
        """Frozen features of every listed image (computed once per identity, then cached)."""
        ident = {**feature_identity(backbone, dataset, spec), "precision": precision}
        key = sha256_text(repr(sorted(ident.items())))[:20]
        if key in self._features:
            return self._features[key]
        path = self.cache_dir / "features" / f"{_safe(backbone.label)}-{dataset.name}-{key}.npy"
        reuse = self.use_disk and not self.refresh
        feats = load_array(path, {"identity": ident}) if reuse else None
        if feats is None:
            feats = self._extract(backbone, dataset, spec, batch_size, precision)
            if self.use_disk:
                save_array(path, feats, {"identity": ident})
        self._features[key] = feats
        return feats

    def _extract(
        self,
        backbone: ResolvedBackbone,
        dataset: ResolvedDataset,
        spec: Any,
        batch_size: int,
        precision: str,
    ) -> np.ndarray:
        from sarfewshot.models.features import extract_features

        images = self.images(dataset, spec)
        model = backbone.factory()
        feats = extract_features(
            model,
            images,
            batch_size=batch_size,
            device=self.device,
            progress=self.progress,
            precision=precision,
        )
        del model
        feats = feats.numpy() if hasattr(feats, "numpy") else np.asarray(feats)
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        if not np.isfinite(feats).all():
            raise FloatingPointError(f"backbone {backbone.label} produced non-finite features")
        return feats


def feature_identity(backbone: ResolvedBackbone, dataset: ResolvedDataset, spec: Any) -> dict:
    """What frozen features depend on: the weights, the listing, the preprocessing."""
    info = backbone.info
    calibration = (info.get("input") or {}).get("calibration", "none")
    extra = {"input_calibration": calibration} if calibration != "none" else {}
    return {
        **extra,  # only when set: the fixed mapping's caches keep their keys
        "version": FEATURE_CACHE_VERSION,
        "backbone": backbone.label,
        "registry_name": backbone.request.name,
        "arch": str(info.get("arch")),
        "weights_sha256": info.get("weights_sha256"),
        "init_seed": info.get("init_seed"),
        "dataset": dataset.name,
        "dataset_version": dataset.version,
        "preprocess": spec.key(),
        "img_size": int(spec.size),
    }


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text)


# ----------------------------------------------------------------------------- splits and cells


def split_dir(cfg: Any, output: Path) -> Path:
    """Where split files live: ``DATASET.SPLIT_DIR`` or ``<output>/splits``."""
    return Path(cfg.DATASET.SPLIT_DIR) if cfg.DATASET.SPLIT_DIR else Path(output) / "splits"


def val_fraction(cfg: Any, dataset: ResolvedDataset) -> float:
    """``DATASET.VAL_POOL`` when set (>= 0), else the dataset's own validation share."""
    value = float(cfg.DATASET.VAL_POOL)
    return value if value >= 0 else float(getattr(dataset.obj, "val_fraction", 0.0) or 0.0)


def load_split(
    cfg: Any,
    dataset: ResolvedDataset,
    output: Path,
    shots: int,
    seed: int,
    redraw_stale: bool = False,
    printer: Printer | None = None,
) -> Any:
    """The cell's split file (drawn and saved on first use, reused afterwards).

    With ``redraw_stale`` (``--force``) a split file drawn from an older listing of the folder
    is drawn again and replaced, with a note through ``printer``; otherwise it is an error.
    """
    from sarfewshot.data.splits import load_or_make_split

    def note(path: Path) -> None:
        if printer is not None:
            printer(f"--force: {path} was drawn from an older listing of the folder; redrawn")

    return load_or_make_split(
        split_dir(cfg, output),
        dataset.listing,
        dataset.split_name,
        seed,
        shots,
        val_fraction(cfg, dataset),
        repeat=bool(cfg.DATASET.REPEAT),
        allow_short=bool(cfg.DATASET.ALLOW_SHORT_CLASSES),
        on_stale=note if redraw_stale else None,
        val_rule=str(cfg.DATASET.VAL_POOL_RULE),
    )


def split_file(cfg: Any, dataset: ResolvedDataset, output: Path, split: Any) -> str:
    """The absolute path of a split's file, as the data layer names it."""
    from sarfewshot.data.splits import split_path

    path = split_path(split_dir(cfg, output), split.dataset, split.shots, split.seed, split.repeat)
    return str(Path(path).resolve())


def _rows(index: dict[str, int], items: Sequence[Any], dataset: str, part: str) -> np.ndarray:
    try:
        return np.array([index[d.impath] for d in items], dtype=np.int64)
    except KeyError as exc:
        raise SarFewShotError(
            f"split {part} entry {exc.args[0]!r} is not in {dataset}'s listing; the split file no"
            " longer matches the dataset folder"
        ) from None


def _take(array: Any, rows: np.ndarray) -> Any:
    """Rows of a tensor/array; a contiguous ascending range comes back as a view."""
    if rows.size and rows[-1] - rows[0] + 1 == rows.size and (np.diff(rows) == 1).all():
        return array[int(rows[0]) : int(rows[-1]) + 1]
    if hasattr(array, "index_select"):
        import torch

        return array.index_select(0, torch.from_numpy(rows))
    return array[rows]


EVAL_SPLITS = ("test", "val")


def scored_name(dataset: str, eval_split: str) -> str:
    """The dataset name a cell's key carries: ``mstar_soc`` on TEST, ``mstar_soc:val`` on the
    validation pool, so validation cells never merge with TEST cells in any table."""
    return dataset if eval_split == "test" else f"{dataset}:{eval_split}"


def eval_items(split: Any, eval_split: str, dataset: str) -> tuple[list, list, str]:
    """The split's validation and evaluated entries, and the listing part the latter come from.

    ``eval_split="val"`` scores on the validation pool instead of TEST and leaves the cell no
    validation pool, so no protocol selects anything (logreg's C, ``best_val``) on the
    images it is scored on.
    """
    val_items = list(getattr(split, "val", None) or [])
    if eval_split == "test":
        return val_items, list(split.test), "test"
    if eval_split != "val":
        raise ConfigError(f"TEST.SPLIT must be one of {', '.join(EVAL_SPLITS)}, got {eval_split!r}")
    if not val_items:
        raise ConfigError(
            f"TEST.SPLIT val: the {dataset} split holds no validation pool (DATASET.VAL_POOL "
            "is 0); draw splits with a pool or evaluate on test"
        )
    return [], val_items, "train"


@dataclass
class Scored:
    """One test set a cell scores: its entries and where their rows lie."""

    name: str
    items: list
    index: dict[str, int]
    images: Any = None
    features: np.ndarray | None = None
    part: str = "test"  # the TestCondition's part: test, val or extra


def cell_data(
    split: Any,
    dataset: ResolvedDataset,
    needs: frozenset[str],
    images: Any = None,
    features: np.ndarray | None = None,
    eval_split: str = "test",
    scored: Sequence[Scored] = (),
) -> CellData:
    """Index the shared images/features with the split's train, val and evaluated entries.

    The evaluated entries fill the ``test`` slot: TEST, or the validation pool when
    ``eval_split`` is ``"val"`` (see :func:`eval_items`). With ``scored`` (the test sets of a
    ``--conditions`` cell, from :func:`scored_sets`) the first fills the test slot and the
    others ``extra_tests``; a cell scored on its validation pool keeps no validation pool.
    """
    val_items, test_items, part = eval_items(split, eval_split, dataset.name)
    if scored:
        test_items = scored[0].items
        if any(s.part == "val" for s in scored):
            val_items = []
    test_index = dataset.test_rows if part == "test" else dataset.train_rows
    rows = {
        "train": _rows(dataset.train_rows, split.train, dataset.name, "train"),
        "val": _rows(dataset.train_rows, val_items, dataset.name, "val"),
        "test": _rows(scored[0].index if scored else test_index, test_items, dataset.name, "test"),
    }
    data = CellData(
        classnames=list(dataset.listing.classnames),
        shots=int(split.shots),
        seed=int(split.seed),
        train_labels=_labels(split.train),
        test_labels=_labels(test_items),
        val_labels=_labels(val_items),
        train_paths=[d.impath for d in split.train],
        test_paths=[d.impath for d in test_items],
        dataset=dataset.name,
    )
    for part, idx in rows.items():
        source = scored[0] if scored and part == "test" else Scored("", [], {}, images, features)
        if REQUIRES_IMAGES in needs and source.images is not None:
            setattr(data, f"{part}_images", _take(source.images, idx))
        if REQUIRES_FEATURES in needs and source.features is not None:
            setattr(data, f"{part}_features", _take(source.features, idx))
    for extra in scored[1:]:
        data.extra_tests[extra.name] = _test_set(extra, needs, dataset.name)
    return data


def _labels(items: Sequence[Any]) -> np.ndarray:
    return np.array([d.label for d in items], dtype=np.int64)


def _test_set(scored: Scored, needs: frozenset[str], dataset: str) -> TestSet:
    idx = _rows(scored.index, scored.items, dataset, scored.name)
    test = TestSet(labels=_labels(scored.items), paths=[d.impath for d in scored.items])
    if REQUIRES_IMAGES in needs and scored.images is not None:
        test.images = _take(scored.images, idx)
    if REQUIRES_FEATURES in needs and scored.features is not None:
        test.features = _take(scored.features, idx)
    return test


def scored_sets(
    split: Any,
    dataset: ResolvedDataset,
    conditions: Sequence[Any],
    own: tuple[Any, Any],
    arrays: Any,
) -> list[Scored]:
    """The test sets of a ``--conditions`` cell, in its conditions' order.

    ``own`` is the setting's ``(images, features)`` (rows: train pool then test set);
    ``arrays(d)`` gives those of an ``extra`` condition's resolved dataset ``d`` (rows: its
    images).
    """
    out = []
    for cond in conditions:
        if cond.part == "test":
            out.append(Scored(cond.name, list(split.test), dataset.test_rows, *own, "test"))
        elif cond.part == "val":
            if not split.val:
                raise ConfigError(
                    f"condition {cond.name} of {dataset.split_name} is scored on the validation "
                    "pool, and the split holds none (DATASET.VAL_POOL is 0); set DATASET.VAL_POOL "
                    "above 0 or leave the condition out"
                )
            out.append(Scored(cond.name, list(split.val), dataset.train_rows, *own, "val"))
        else:
            extra = dataset.extra_sets[cond.name]
            items = list(extra.listing.test)
            out.append(Scored(cond.name, items, extra.test_rows, *arrays(extra), "extra"))
    return out


# ----------------------------------------------------------------------------- the workspace


@dataclass
class Workspace:
    """What executors and records read: the run folder, the device, the resolved backbones,
    datasets and protocols, and the shared caches."""

    output: Path
    device: str
    progress: bool
    datasets: dict[str, ResolvedDataset]
    backbones: list[ResolvedBackbone]
    protocols: dict[str, type]
    shared: SharedData | None = None
    tensorboard: bool = False
    printer: Printer = print

    def split(self, cell: Any, redraw: bool = False) -> Any:
        """The cell's split; ``redraw`` replaces a split file drawn from an older listing."""
        ds = self.datasets[cell.dataset]
        return load_split(cell.cfg, ds, self.output, cell.shots, cell.seed, redraw, self.printer)

    def inputs(self, cell: Any) -> tuple[Any, CellData]:
        """The cell's split and its data (images and/or features, shared across cells); a
        ``--conditions`` cell also gets every condition's test set."""
        from sarfewshot.data.transforms import spec_from_cfg

        cfg, protocol = cell.cfg, self.protocols[cell.protocol]
        ds, bb = self.datasets[cell.dataset], self.backbones[cell.backbone]
        split = self.split(cell)
        needs = protocol.requirements(cfg)
        spec = spec_from_cfg(cfg)
        shared = self.shared
        if shared is None:
            raise RuntimeError("the workspace has no shared data (the runner sets it)")

        def arrays(d: ResolvedDataset) -> tuple[Any, Any]:
            images = shared.images(d, spec) if REQUIRES_IMAGES in needs else None
            feats = None
            if REQUIRES_FEATURES in needs:
                batch, precision = int(cfg.DATALOADER.TEST.BATCH_SIZE), str(cfg.MODEL.PRECISION)
                feats = shared.features(bb, d, spec, batch, precision)
            return images, feats

        images, feats = arrays(ds)
        conditions = cell.conditions
        scored = scored_sets(split, ds, conditions, (images, feats), arrays) if conditions else []
        eval_split = str(cfg.TEST.SPLIT)
        return split, cell_data(split, ds, needs, images, feats, eval_split, scored)
