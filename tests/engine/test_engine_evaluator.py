"""Classification metrics on a hand-worked example, and Dassl's printed result block."""

from __future__ import annotations

import pytest
import torch

from sarfewshot.engine.config import get_cfg_default
from sarfewshot.engine.evaluator import (
    Classification,
    build_evaluator,
    compute_metrics,
    format_result_block,
)
from sarfewshot.engine.registry import EVALUATOR_REGISTRY

NAMES = ["a", "b", "c", "d"]  # "d" never occurs: it must still get a confusion-matrix row
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 0, 0]
# By hand: F1(a) = 2*2 / (2*2 + 2 + 1) = 4/7, F1(b) = 2 / (2 + 1 + 1) = 1/2, F1(c) = 0;
# the macro average runs over the labels present in y_true (a, b, c).
MACRO_F1 = 100 * (4 / 7 + 1 / 2 + 0) / 3


def test_compute_metrics_by_hand():
    m = compute_metrics(Y_TRUE, Y_PRED, NAMES)
    assert (m["total"], m["correct"]) == (6, 3)
    assert m["accuracy"] == pytest.approx(50.0) and m["error"] == pytest.approx(50.0)
    assert m["macro_f1"] == pytest.approx(MACRO_F1)
    assert m["per_class_accuracy"] == pytest.approx({"a": 200 / 3, "b": 50.0, "c": 0.0})
    assert m["confusion_matrix"] == [[2, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_compute_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="no samples"):
        compute_metrics([], [], NAMES)
    with pytest.raises(ValueError, match="outside"):
        compute_metrics([0, 1], [0, 7], NAMES)
    with pytest.raises(ValueError, match="predictions"):
        compute_metrics([0, 1], [0], NAMES)


def test_result_block_format_is_dassls():
    m = compute_metrics(Y_TRUE, Y_PRED, NAMES)
    assert format_result_block(m) == (
        "=> result\n* total: 6\n* correct: 3\n* accuracy: 50.0%\n* error: 50.0%\n* macro_f1: 35.7%"
    )
    big = {"total": 2425, "correct": 2001, "accuracy": 82.51, "error": 17.49, "macro_f1": 80.04}
    assert format_result_block(big).splitlines()[1:4] == [
        "* total: 2,425",
        "* correct: 2,001",
        "* accuracy: 82.5%",
    ]


def test_classification_evaluator_batches_logits_and_labels():
    cfg = get_cfg_default()
    cfg.TEST.PER_CLASS_RESULT = True
    cfg.TEST.COMPUTE_CMAT = True
    printed: list[str] = []
    ev = build_evaluator(cfg, lab2cname=dict(enumerate(NAMES)), printer=printed.append)
    assert isinstance(ev, Classification) and "Classification" in EVALUATOR_REGISTRY
    logits = torch.nn.functional.one_hot(torch.tensor(Y_PRED[:4]), 4).float()
    ev.process(logits, torch.tensor(Y_TRUE[:4]))  # logits: argmax
    ev.process(torch.tensor(Y_PRED[4:]), torch.tensor(Y_TRUE[4:]))  # predicted labels
    res = ev.evaluate()
    assert list(res)[:3] == ["accuracy", "error", "macro_f1"]
    assert res["accuracy"] == pytest.approx(50.0)
    assert res["macro_f1"] == pytest.approx(MACRO_F1)
    assert res["per_class_accuracy"]["a"] == pytest.approx(200 / 3)
    assert res["perclass_accuracy"] == pytest.approx((200 / 3 + 50 + 0) / 3)
    assert res["confusion_matrix"][0] == pytest.approx([2 / 3, 1 / 3, 0, 0])
    assert res["confusion_matrix"][3] == [0, 0, 0, 0]
    assert printed[0].startswith("=> result\n* total: 6")
    assert "* class: 0 (a)\ttotal: 3\tcorrect: 2\tacc: 66.7%" in printed[1]
    assert ev.metrics["confusion_matrix"][0] == [2, 1, 0, 0]
    ev.reset()
    ev.process(torch.tensor([1]), torch.tensor([1]))
    assert ev.evaluate()["accuracy"] == 100.0


def test_default_evaluator_is_quietly_optional():
    cfg = get_cfg_default()
    ev = Classification(cfg, printer=None)  # no lab2cname: labels name themselves
    ev.process(torch.tensor([0, 2]), torch.tensor([0, 1]))
    res = ev.evaluate()
    assert set(res) == {"accuracy", "error", "macro_f1"}
    assert set(ev.metrics["per_class_accuracy"]) == {"0", "1"}
    assert len(ev.metrics["confusion_matrix"]) == 3
