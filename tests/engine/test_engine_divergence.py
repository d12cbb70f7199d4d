"""The divergence rule of trained cells (``sarfewshot.engine.protocol.divergence``), directly."""

from __future__ import annotations

import math

import pytest

from sarfewshot.engine.protocol import DIVERGENCE_FACTOR, divergence


def test_the_factor_is_ten():
    assert DIVERGENCE_FACTOR == 10.0


def test_a_blown_up_first_epoch_does_not_hide_a_divergence():
    # start = min(first epoch 50, ln 10 = 2.303) = 2.303, so 30 is more than 10x the start.
    # Measured against the larger start (50) the cell would pass.
    why = divergence({"first_train_loss": 50.0, "final_train_loss": 30.0}, num_classes=10)
    assert why is not None
    assert "ended at 30" in why and "(2.303)" in why and "OPTIM.LR" in why


def test_a_first_epoch_below_the_uniform_loss_is_the_start():
    # start = min(0.5, ln 10) = 0.5: 6.0 is 12x that, although below 10 ln 10 = 23.
    why = divergence({"first_train_loss": 0.5, "final_train_loss": 6.0}, num_classes=10)
    assert why is not None and "(0.5)" in why
    assert divergence({"first_train_loss": 0.5, "final_train_loss": 4.9}, num_classes=10) is None


@pytest.mark.parametrize(
    ("first", "final", "classes", "diverged"),
    [
        (2.0, 19.9, 100, False),  # 19.9 <= 10 * 2.0
        (2.0, 20.1, 100, True),
        (None, 10 * math.log(4) - 1e-9, 4, False),  # no first loss: ln(classes) alone
        (None, 10 * math.log(4) + 1e-6, 4, True),
        (float("nan"), 10 * math.log(4) + 1e-6, 4, True),  # a non-finite start is ignored
        (0.0, 1e6, 1, False),  # one class, zero start: no positive start, nothing to compare
        (3.0, 31.0, 1, True),  # one class: only the first epoch counts
    ],
)
def test_the_threshold_is_ten_times_the_lower_start(first, final, classes, diverged):
    metrics = {"first_train_loss": first, "final_train_loss": final}
    assert (divergence(metrics, classes) is not None) is diverged


@pytest.mark.parametrize("final", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_final_loss_diverged(final):
    why = divergence({"first_train_loss": 1.0, "final_train_loss": final}, num_classes=3)
    assert why is not None and "non-finite" in why


def test_protocols_without_a_training_loss_never_diverge():
    assert divergence({"accuracy": 12.5}, num_classes=10) is None
    assert divergence({"first_train_loss": 1.0, "final_train_loss": 0.1}, num_classes=10) is None
