"""Dassl's ``Classification`` evaluator and the metric helpers the whole toolkit shares.

:func:`compute_metrics` is the single definition of the numbers a record holds (accuracy,
error, macro-F1, per-class accuracy, confusion matrix); the evaluator accumulates
predictions batch by batch, then prints Dassl's result block, which CoOp's
``parse_test_res.py`` and :mod:`sarfewshot.results.dassl_logs` read back.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.metrics import f1_score

from sarfewshot.engine.registry import EVALUATOR_REGISTRY


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu() if x.is_floating_point() else x.detach().cpu()
        return x.numpy()
    return np.asarray(x)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``num_classes x num_classes`` counts: rows = true label, columns = predicted label."""
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside [0, {num_classes})")
    cmat = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cmat, (y_true, y_pred), 1)
    return cmat


def row_normalize(cmat: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows of absent classes stay zero)."""
    sums = cmat.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(cmat, sums, out=np.zeros(cmat.shape, dtype=np.float64), where=sums > 0)


def compute_metrics(y_true: Any, y_pred: Any, classnames: Sequence[str]) -> dict[str, Any]:
    """Classification metrics of predicted labels, in percent.

    Args:
        y_true: true labels (ints in ``[0, len(classnames))``).
        y_pred: predicted labels, same length.
        classnames: every class name, index = label.

    Returns:
        ``accuracy``, ``error``, ``macro_f1`` (sklearn's macro F1 over the labels present in
        ``y_true``, as Dassl computes it), ``per_class_accuracy`` ({classname: percent} for
        the classes present in ``y_true``), ``confusion_matrix`` (raw counts, a list of lists
        over all classes, rows = true), ``total`` and ``correct``.

    Raises:
        ValueError: empty or mismatched inputs, or labels outside the class range.
    """
    y_true = _to_numpy(y_true).astype(np.int64).ravel()
    y_pred = _to_numpy(y_pred).astype(np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.size} true labels but {y_pred.size} predictions")
    if y_true.size == 0:
        raise ValueError("no samples to evaluate")
    cmat = confusion_counts(y_true, y_pred, len(classnames))
    total, correct = int(y_true.size), int((y_true == y_pred).sum())
    accuracy = 100.0 * correct / total
    present = np.unique(y_true)
    f1 = f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
    diag = np.diag(cmat)
    per_class = {
        classnames[c]: 100.0 * float(diag[c]) / float(cmat[c].sum()) for c in present.tolist()
    }
    return {
        "accuracy": accuracy,
        "error": 100.0 - accuracy,
        "macro_f1": 100.0 * float(f1),
        "per_class_accuracy": per_class,
        "confusion_matrix": cmat.tolist(),
        "total": total,
        "correct": correct,
    }


def format_result_block(metrics: dict[str, Any]) -> str:
    """Dassl's result block (one decimal; counts with thousands separators, as Dassl prints)."""
    return (
        "=> result\n"
        f"* total: {metrics['total']:,}\n"
        f"* correct: {metrics['correct']:,}\n"
        f"* accuracy: {metrics['accuracy']:.1f}%\n"
        f"* error: {metrics['error']:.1f}%\n"
        f"* macro_f1: {metrics['macro_f1']:.1f}%"
    )


def format_per_class_block(metrics: dict[str, Any], classnames: Sequence[str]) -> str:
    """Dassl's per-class block (``* class: L (name)\\ttotal: ...``) and the class average."""
    cmat = np.asarray(metrics["confusion_matrix"])
    lines = ["=> per-class result"]
    accs = []
    for label, name in enumerate(classnames):
        total = int(cmat[label].sum())
        if total == 0:
            continue
        correct = int(cmat[label, label])
        acc = 100.0 * correct / total
        accs.append(acc)
        lines.append(
            f"* class: {label} ({name})\ttotal: {total:,}\tcorrect: {correct:,}\tacc: {acc:.1f}%"
        )
    lines.append(f"* average: {float(np.mean(accs)):.1f}%")
    return "\n".join(lines)


@EVALUATOR_REGISTRY.register("Classification")
class Classification:
    """Dassl's classification evaluator: ``reset()``, ``process(mo, gt)``, ``evaluate()``.

    Args:
        cfg: the config (reads ``TEST.PER_CLASS_RESULT`` and ``TEST.COMPUTE_CMAT``).
        lab2cname: label -> class name; labels seen but missing get their number as name.
        printer: where the result blocks go (default ``print``; ``None`` prints nothing).
    """

    def __init__(
        self,
        cfg: Any,
        lab2cname: dict[int, str] | None = None,
        printer: Callable[[str], None] | None = print,
        **kwargs: Any,
    ) -> None:
        self.cfg = cfg
        self._lab2cname = dict(lab2cname or {})
        self.per_class = bool(cfg.TEST.PER_CLASS_RESULT)
        self.compute_cmat = bool(cfg.TEST.COMPUTE_CMAT)
        self.printer = printer
        self.metrics: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every processed batch."""
        self._y_true: list[np.ndarray] = []
        self._y_pred: list[np.ndarray] = []

    def process(self, mo: Any, gt: Any) -> None:
        """Add a batch: ``mo`` = logits ``(B, C)`` or predicted labels ``(B,)``; ``gt`` = labels."""
        out = _to_numpy(mo)
        pred = out.argmax(axis=1) if out.ndim == 2 else out.reshape(-1)
        self._y_pred.append(pred.astype(np.int64))
        self._y_true.append(_to_numpy(gt).astype(np.int64).reshape(-1))

    def classnames(self, y_true: np.ndarray, y_pred: np.ndarray) -> list[str]:
        """Class names over every label known or seen, index = label."""
        seen = [*self._lab2cname, int(y_true.max(initial=-1)), int(y_pred.max(initial=-1))]
        num = max(seen) + 1
        return [self._lab2cname.get(i, str(i)) for i in range(num)]

    def evaluate(self) -> OrderedDict:
        """Compute, print and return ``accuracy``, ``error``, ``macro_f1`` (percent).

        With ``TEST.PER_CLASS_RESULT`` the result also holds ``per_class_accuracy``
        ({classname: percent}) and Dassl's ``perclass_accuracy`` (their mean); with
        ``TEST.COMPUTE_CMAT`` it holds ``confusion_matrix``, row-normalised. Every metric of
        :func:`compute_metrics` stays available in :attr:`metrics`.
        """
        y_true = np.concatenate(self._y_true) if self._y_true else np.zeros(0, np.int64)
        y_pred = np.concatenate(self._y_pred) if self._y_pred else np.zeros(0, np.int64)
        names = self.classnames(y_true, y_pred)
        self.metrics = compute_metrics(y_true, y_pred, names)
        results: OrderedDict = OrderedDict(
            (k, self.metrics[k]) for k in ("accuracy", "error", "macro_f1")
        )
        self._print(format_result_block(self.metrics))
        if self.per_class:
            per_class = self.metrics["per_class_accuracy"]
            results["per_class_accuracy"] = dict(per_class)
            results["perclass_accuracy"] = float(np.mean(list(per_class.values())))
            self._print(format_per_class_block(self.metrics, names))
        if self.compute_cmat:
            cmat = np.asarray(self.metrics["confusion_matrix"])
            results["confusion_matrix"] = row_normalize(cmat).tolist()
        return results

    def _print(self, text: str) -> None:
        if self.printer is not None:
            self.printer(text)


def build_evaluator(cfg: Any, **kwargs: Any) -> Any:
    """The evaluator named by ``cfg.TEST.EVALUATOR`` (Dassl's ``build_evaluator``)."""
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)
