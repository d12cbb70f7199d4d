"""``logreg``: L-BFGS multinomial logistic regression on frozen features.

The inverse regularisation strength C is chosen from ``TRAINER.LOGREG.C_GRID`` on a validation
set drawn from the train folder, never from the test set:

- ``VAL_SOURCE "pool"``: the split's validation pool (the share of each train class held out
  before the K-shot draw);
- ``VAL_SOURCE "holdout"``: a seeded, stratified hold-out of the K-shot set itself
  (``HOLDOUT_FRACTION`` of each class, at least one image, needs K >= 2);
- ``VAL_SOURCE "auto"`` (default): the pool when the split has one, else the hold-out, else
  (K = 1 without a pool) ``DEFAULT_C``.

Ties on validation accuracy go to the lower validation log-loss. The model is then refitted on
the whole K-shot set with the chosen C. Features are standardised with the fitting set's
statistics. The chosen C, its source and its validation accuracy are recorded in the metrics.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from yacs.config import CfgNode

from sarfewshot.engine.protocol import CellData, FeatureProtocol, Scorer
from sarfewshot.engine.registry import TRAINER_REGISTRY
from sarfewshot.errors import ConfigError
from sarfewshot.utils.seeding import numpy_rng

VAL_SOURCES = ("auto", "pool", "holdout")


class _Standardizer:
    """Per-dimension mean/std scaling fitted on one set and applied to others."""

    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(axis=0, keepdims=True)
        self.std = x.std(axis=0, keepdims=True) + 1e-6

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float64)


def fit_logreg(x: np.ndarray, y: np.ndarray, c: float, max_iter: int) -> Any:
    """Fit a multinomial L-BFGS logistic regression (scikit-learn) with inverse strength ``c``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter, tol=1e-6)
    with warnings.catch_warnings():
        # Tiny support sets are often separable: lbfgs hitting max_iter there is expected.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model


def _log_loss(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    proba = model.predict_proba(x)
    cols = np.searchsorted(model.classes_, y)
    known = np.isin(y, model.classes_)
    picked = np.where(known, proba[np.arange(len(y)), np.minimum(cols, proba.shape[1] - 1)], 0)
    return float(-np.log(np.clip(picked, 1e-12, None)).mean())


def select_c(
    fit_x: np.ndarray,
    fit_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    grid: list[float],
    max_iter: int,
) -> tuple[float, float]:
    """Return ``(best C, its validation accuracy %)``; ties go to the lower log-loss."""
    scale = _Standardizer(fit_x)
    fx, vx = scale(fit_x), scale(val_x)
    best: tuple[float, float, float] | None = None  # (-acc, loss, C)
    for c in grid:
        model = fit_logreg(fx, fit_y, c, max_iter)
        acc = 100.0 * float((model.predict(vx) == val_y).mean())
        cand = (-acc, _log_loss(model, vx, val_y), c)
        if best is None or cand[:2] < best[:2]:
            best = cand
    assert best is not None
    return best[2], -best[0]


def stratified_holdout(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (fit, holdout): per class ``max(1, floor(n * fraction))`` held out,
    always leaving at least one image of the class to fit on.
    """
    fit, hold = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        n_hold = min(max(1, int(len(idx) * fraction)), len(idx) - 1)
        hold.extend(idx[:n_hold].tolist())
        fit.extend(idx[n_hold:].tolist())
    return np.array(sorted(fit), dtype=np.int64), np.array(sorted(hold), dtype=np.int64)


@TRAINER_REGISTRY.register("logreg")
class LogReg(FeatureProtocol):
    """Logistic regression with C chosen on a validation set from the train folder."""

    name = "logreg"
    preset = ("trainers", "logreg", "default.yaml")

    @classmethod
    def extend_cfg(cls, cfg: CfgNode) -> None:
        """Add ``TRAINER.LOGREG.{C_GRID, VAL_SOURCE, HOLDOUT_FRACTION, DEFAULT_C, MAX_ITER}``."""
        cfg.TRAINER.LOGREG = CfgNode()
        cfg.TRAINER.LOGREG.C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
        cfg.TRAINER.LOGREG.VAL_SOURCE = "auto"  # auto | pool | holdout
        cfg.TRAINER.LOGREG.HOLDOUT_FRACTION = 0.5  # share of each K-shot class held out
        cfg.TRAINER.LOGREG.DEFAULT_C = 1.0  # used when no validation set can be formed
        cfg.TRAINER.LOGREG.MAX_ITER = 1000

    @classmethod
    def _validation(
        cls, cfg: CfgNode, data: CellData, x: np.ndarray, y: np.ndarray
    ) -> tuple[str, tuple[np.ndarray, ...] | None]:
        """Pick the validation source and return ``(source, (fit_x, fit_y, val_x, val_y))``."""
        source = str(cfg.TRAINER.LOGREG.VAL_SOURCE)
        if source not in VAL_SOURCES:
            raise ConfigError(f"TRAINER.LOGREG.VAL_SOURCE {source!r}: use one of {VAL_SOURCES}")
        if source in ("auto", "pool") and data.has_val():
            vx, vy = data.features("val")
            return "pool", (x, y, vx, vy)
        if source == "pool":
            raise ConfigError("TRAINER.LOGREG.VAL_SOURCE pool: this split has no validation pool")
        if np.bincount(y).max() < 2:
            return "default", None  # K = 1: nothing can be held out
        rng = numpy_rng(data.seed, data.dataset, data.shots, "logreg-holdout")
        fit, hold = stratified_holdout(y, float(cfg.TRAINER.LOGREG.HOLDOUT_FRACTION), rng)
        return "holdout", (x[fit], y[fit], x[hold], y[hold])

    @classmethod
    def fit(cls, cfg: CfgNode, data: CellData) -> Scorer:
        """Choose C on validation and refit on the K-shot set; the scorer predicts any set."""
        x, y = data.features("train")
        max_iter = int(cfg.TRAINER.LOGREG.MAX_ITER)
        source, val = cls._validation(cfg, data, x, y)
        extras: dict[str, Any] = {"logreg_val_source": source}
        if val is None:
            c = float(cfg.TRAINER.LOGREG.DEFAULT_C)
        else:
            grid = [float(v) for v in cfg.TRAINER.LOGREG.C_GRID]
            c, val_acc = select_c(*val, grid, max_iter)
            extras["logreg_val_accuracy"] = val_acc
        extras["chosen_C"] = c
        scale = _Standardizer(x)
        model = fit_logreg(scale(x), y, c, max_iter)

        def score(test_x: np.ndarray, _test_y: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
            return model.predict(scale(test_x)).astype(np.int64), dict(extras)

        return score
