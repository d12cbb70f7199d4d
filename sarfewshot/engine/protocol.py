"""The interface every evaluation protocol implements, and the helpers protocols share.

A protocol (``trainers/<name>.py``, registered in ``TRAINER_REGISTRY``) evaluates one grid
cell: one backbone on one few-shot split (dataset, K, seed). The grid hands it a
:class:`CellData` (the cell's support and test sets, as decoded image tensors and/or frozen
backbone features, both shared across cells so nothing is decoded or embedded twice) and a
:class:`CellContext` (device, a factory for a fresh backbone, an epoch callback). It returns a
:class:`CellOutcome` (metrics and timings) that the grid turns into a record.

Feature-based protocols (``knn``, ``prototype``, ``logreg``) subclass :class:`FeatureProtocol`;
trained protocols (``finetune``, ``linear``) are ``TrainerX`` subclasses that also inherit
:class:`Protocol`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from sarfewshot.errors import NonFiniteLossError  # noqa: F401  (protocols raise it from here)

REQUIRES_IMAGES = "images"
REQUIRES_FEATURES = "features"


@dataclass
class TestSet:
    """One more test set of a cell (an operating condition beyond the test slot).

    Attributes:
        labels: int64 labels.
        images: ``(N, 1, S, S)`` tensor when the protocol needs images.
        features: ``(N, D)`` float32 frozen features when the protocol needs features.
        paths: image paths (relative to the dataset root).
    """

    labels: np.ndarray
    images: Any = None
    features: np.ndarray | None = None
    paths: list[str] = field(default_factory=list)


@dataclass
class CellData:
    """The inputs of one cell, already decoded (and embedded, for feature protocols).

    Attributes:
        classnames: class names, index = label.
        shots: K, images per class in the support set.
        seed: the cell's seed (every generator of the protocol derives from it).
        train_labels / test_labels / val_labels: int64 label arrays.
        train_images / test_images / val_images: ``(N, 1, S, S)`` uint8 or float32 tensors
            (uint8 means ``value / 255``), present when the protocol needs images.
        train_features / test_features / val_features: ``(N, D)`` float32 frozen-backbone
            features, present when the protocol needs features.
        train_paths / test_paths: image paths (relative to the dataset root), for batches.
        dataset: dataset name, for derived seeds.
        extra_tests: further test sets by condition name (``eval --conditions``): the protocol
            trains once and scores each of them too (:attr:`CellOutcome.conditions`).
    """

    classnames: list[str]
    shots: int
    seed: int
    train_labels: np.ndarray
    test_labels: np.ndarray
    val_labels: np.ndarray | None = None
    train_images: Any = None
    test_images: Any = None
    val_images: Any = None
    train_features: np.ndarray | None = None
    test_features: np.ndarray | None = None
    val_features: np.ndarray | None = None
    train_paths: list[str] = field(default_factory=list)
    test_paths: list[str] = field(default_factory=list)
    dataset: str = ""
    extra_tests: dict[str, TestSet] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes of the dataset (not only those present in the support set)."""
        return len(self.classnames)

    def features(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(features, labels)`` of ``part`` (``train``, ``val`` or ``test``).

        Raises:
            ValueError: when the grid did not provide features for that part.
        """
        feats = getattr(self, f"{part}_features")
        labels = getattr(self, f"{part}_labels")
        if feats is None or labels is None:
            raise ValueError(f"cell has no {part} features (the protocol needs them)")
        return np.asarray(feats, dtype=np.float32), np.asarray(labels, dtype=np.int64)

    def has_val(self) -> bool:
        """Whether a non-empty validation pool (drawn from the train folder) came with the cell."""
        return (
            self.val_features is not None
            and self.val_labels is not None
            and len(self.val_labels) > 0
        )


@dataclass
class CellContext:
    """What the grid lends a protocol besides data.

    Attributes:
        device: ``"cpu"`` or ``"cuda[:i]"``.
        backbone_factory: returns a fresh backbone (weights loaded, fp32, on CPU); protocols
            that train or re-run the backbone call it once per cell.
        on_epoch: called as ``on_epoch(epoch, max_epoch)`` after each epoch (progress bar).
        progress: whether protocols may draw their own progress bars.
        on_summary: called with each epoch's summary dict (``epoch``, ``lr``, ``loss``, ...)
            by protocols that train (TensorBoard logging).
    """

    device: str = "cpu"
    backbone_factory: Callable[[], Any] | None = None
    on_epoch: Callable[[int, int], None] | None = None
    progress: bool = False
    on_summary: Callable[[dict], None] | None = None

    def new_backbone(self) -> Any:
        """A fresh backbone from :attr:`backbone_factory`."""
        if self.backbone_factory is None:
            raise ValueError("this protocol needs a backbone but the cell context has none")
        return self.backbone_factory()


DIVERGENCE_FACTOR = 10.0
# what a trained cell reports about its training: the same for every test set it scores
TRAINING_METRICS = ("epochs", "final_train_loss", "first_train_loss")


def divergence(metrics: dict[str, Any], num_classes: int) -> str | None:
    """Why a trained cell counts as diverged, or None when its loss behaved.

    A cell diverged when its last epoch's training loss is not finite or ends more than
    :data:`DIVERGENCE_FACTOR` times above where it started: the first epoch's loss, or the
    cross-entropy of a uniform guess, ``ln(num_classes)``, whichever is lower (a first epoch
    that already blew up must not hide the divergence). Protocols without a training loss
    never diverge.
    """
    final = metrics.get("final_train_loss")
    if final is None:
        return None
    if not math.isfinite(final):
        return f"the training loss ended non-finite ({final})"
    starts = [metrics.get("first_train_loss"), math.log(num_classes) if num_classes > 1 else None]
    starts = [v for v in starts if v is not None and math.isfinite(v) and v > 0]
    if starts and final > DIVERGENCE_FACTOR * min(starts):
        return (
            f"the training loss ended at {final:.4g}, more than {DIVERGENCE_FACTOR:g}x its "
            f"start ({min(starts):.4g}); lower OPTIM.LR"
        )
    return None


@dataclass
class CellOutcome:
    """A protocol's result for one cell: metrics (percent) plus extras, and timings (s).

    ``conditions`` holds the metrics of each of the cell's ``extra_tests``, scored by the same
    trained model (or fitted classifier) as the test slot.
    """

    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)


class Protocol:
    """Mix-in describing a protocol to the grid.

    Class attributes:
        name: registry name (``finetune``, ``linear``, ...).
        default_seeds: seeds run when ``--seeds`` is not given.
        preset: path parts of the bundled YAML preset under ``configs/`` (empty: none).
    """

    name: ClassVar[str] = ""
    default_seeds: ClassVar[tuple[int, ...]] = (1, 2, 3, 4, 5)
    preset: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def extend_cfg(cls, cfg: Any) -> None:
        """Add the protocol's ``TRAINER.<NAME>.*`` keys to ``cfg`` (default: none)."""

    @classmethod
    def requirements(cls, cfg: Any) -> frozenset[str]:
        """What the cell data must hold (:data:`REQUIRES_IMAGES`, :data:`REQUIRES_FEATURES`)."""
        return frozenset({REQUIRES_FEATURES})

    @classmethod
    def run_cell(cls, cfg: Any, data: CellData, ctx: CellContext) -> CellOutcome:
        """Evaluate one cell and return its metrics."""
        raise NotImplementedError


Scorer = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, dict[str, Any]]"]


class FeatureProtocol(Protocol):
    """A protocol that only reads frozen features: subclasses implement :meth:`fit`."""

    @classmethod
    def fit(cls, cfg: Any, data: CellData) -> Scorer:
        """Fit on the support features once; return ``score(features, labels) -> (predictions,
        extras)``, which scores any test set with that fit."""
        raise NotImplementedError

    @classmethod
    def predict(cls, cfg: Any, data: CellData) -> tuple[np.ndarray, dict[str, Any]]:
        """Test-set predictions and protocol extras for the metrics."""
        return cls.fit(cfg, data)(*data.features("test"))

    @classmethod
    def run_cell(cls, cfg: Any, data: CellData, ctx: CellContext) -> CellOutcome:
        """Fit on the support features once, then score the test set and every extra one."""
        start = time.perf_counter()
        score = cls.fit(cfg, data)
        preds, extras = score(*data.features("test"))
        fit_s = time.perf_counter() - start
        metrics = classification_metrics(data.test_labels, preds, data.classnames, extras)
        conditions = {}
        for name, test in data.extra_tests.items():
            if test.features is None:
                raise ValueError(f"condition {name} has no features (the protocol needs them)")
            x = np.asarray(test.features, dtype=np.float32)
            y = np.asarray(test.labels, dtype=np.int64)
            preds, extras = score(x, y)
            conditions[name] = classification_metrics(y, preds, data.classnames, extras)
        return CellOutcome(metrics=metrics, timings={"fit_s": fit_s}, conditions=conditions)


# ----------------------------------------------------------------------------- helpers


def classification_metrics(
    y_true: Any, y_pred: Any, classnames: list[str], extras: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The engine's classification metrics, plus protocol extras (which may not shadow them)."""
    from sarfewshot.engine.evaluator import compute_metrics

    metrics = dict(
        compute_metrics(
            np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64), classnames
        )
    )
    for key, value in (extras or {}).items():
        if key in metrics:
            raise KeyError(f"protocol extra {key!r} would overwrite a standard metric")
        metrics[key] = value
    return metrics


def l2_normalize(x: Any, eps: float = 1e-12) -> Any:
    """Rows of a torch tensor scaled to unit L2 norm (zero rows stay zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(eps)


def batches(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)`` in chunks of ``size``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _test_slot_cfg(cfg: Any) -> Any:
    """``cfg`` with ``TEST.SPLIT test``: the grid already put the scored images (TEST, or the
    validation pool under ``TEST.SPLIT val``) in the cell's test slot."""
    if str(cfg.TEST.SPLIT) == "test":
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.SPLIT = "test"
    cfg.freeze()
    return cfg


class TrainedProtocol(Protocol):
    """Mix-in for protocols that are ``TrainerX`` subclasses (``finetune``, ``linear``).

    :meth:`run_cell` wraps the cell's tensors in a ``DataManager``, builds the trainer with a
    fresh backbone from the context, trains for ``OPTIM.MAX_EPOCH`` epochs and tests the
    last-epoch model. Subclasses say which tensors they train on via :meth:`requirements` and
    may add constructor options via :meth:`trainer_options`.
    """

    @classmethod
    def trainer_options(cls, cfg: Any, data: CellData, ctx: CellContext) -> dict[str, Any]:
        """Extra keyword arguments for the trainer's constructor (default: a fresh backbone)."""
        return {"backbone": ctx.new_backbone()}

    def cell_extras(self) -> dict[str, Any]:
        """Protocol extras for the cell's metrics, read after training (default: none)."""
        return {}

    @classmethod
    def datamanager(cls, cfg: Any, data: CellData) -> Any:
        """Loaders over the cell's features (when required) or images."""
        import torch

        from sarfewshot.data.datamanager import DataManager

        part = "features" if REQUIRES_FEATURES in cls.requirements(cfg) else "images"

        def tensor(name: str) -> Any:
            value = getattr(data, f"{name}_{part}")
            if value is None:
                return None
            return torch.from_numpy(np.ascontiguousarray(value)) if part == "features" else value

        if tensor("train") is None or tensor("test") is None:
            raise ValueError(f"protocol {cls.name} needs the cell's train and test {part}")
        return DataManager.from_tensors(
            cfg,
            tensor("train"),
            data.train_labels,
            tensor("test"),
            data.test_labels,
            data.classnames,
            val_images=tensor("val"),
            val_labels=data.val_labels,
            train_impaths=data.train_paths or None,
            test_impaths=data.test_paths or None,
        )

    @classmethod
    def run_cell(cls, cfg: Any, data: CellData, ctx: CellContext) -> CellOutcome:
        """Train on the support set, test the last-epoch model on the whole test set."""
        start = time.perf_counter()
        callbacks = []
        if ctx.on_epoch is not None:
            callbacks.append(lambda s: ctx.on_epoch(int(s["epoch"]), int(s["max_epoch"])))
        if ctx.on_summary is not None:
            callbacks.append(ctx.on_summary)
        cfg = _test_slot_cfg(cfg)
        trainer = cls(  # type: ignore[call-arg]
            cfg,
            cls.datamanager(cfg, data),
            device=ctx.device,
            save_checkpoints=False,
            write_log=False,
            verbose=False,
            show_progress=False,
            callbacks=callbacks,
            **cls.trainer_options(cfg, data, ctx),
        )
        setup_s = time.perf_counter() - start
        trainer.train()
        metrics = {k: v for k, v in (trainer.last_result or {}).items() if k != "split"}
        if not metrics:
            raise RuntimeError(f"{cls.name}: training finished without a test result")
        if trainer.history:
            last = trainer.history[-1]
            metrics["epochs"] = int(last["epoch"])
            if "loss" in last:
                metrics["final_train_loss"] = float(last["loss"])
                metrics["first_train_loss"] = float(trainer.history[0]["loss"])
        metrics.update(trainer.cell_extras())
        timings = {"setup_s": setup_s, **{k: float(v) for k, v in trainer.timings.items()}}
        conditions = cls.score_conditions(trainer, cfg, data)
        trained = {k: metrics[k] for k in TRAINING_METRICS if k in metrics}
        conditions = {name: {**m, **trained} for name, m in conditions.items()}
        return CellOutcome(metrics=metrics, timings=timings, conditions=conditions)

    @classmethod
    def score_conditions(cls, trainer: Any, cfg: Any, data: CellData) -> dict[str, dict]:
        """The trained model's metrics on each of ``data.extra_tests`` (no further training)."""
        import torch

        from sarfewshot.data.datamanager import TensorImageDataset, build_data_loader

        part = "features" if REQUIRES_FEATURES in cls.requirements(cfg) else "images"
        out = {}
        for name, test in data.extra_tests.items():
            value = getattr(test, part)
            if value is None:
                raise ValueError(f"protocol {cls.name} needs the {part} of condition {name}")
            if part == "features":
                value = torch.from_numpy(np.ascontiguousarray(value))
            dataset = TensorImageDataset(value, test.labels, test.paths or None)
            batch = int(cfg.DATALOADER.TEST.BATCH_SIZE)
            trainer.test_loader = build_data_loader(cfg, dataset, False, "SequentialSampler", batch)
            trainer.test("test")
            out[name] = {k: v for k, v in (trainer.last_result or {}).items() if k != "split"}
        return out
