"""The runs x seeds interval, checked against the one-run Student-t interval and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sarfewshot.results.aggregate import summarize
from sarfewshot.results.crossed import crossed_interval


def test_one_run_is_the_student_t_interval():
    seeds = [61.0, 64.5, 58.0, 66.0, 60.5]
    s, c = summarize(seeds), crossed_interval([seeds])
    assert c.mean == pytest.approx(s.mean, abs=1e-12)
    assert c.ci95 == pytest.approx(s.ci95_t, rel=1e-12)
    assert c.df == pytest.approx(4.0)


def test_two_runs_by_hand():
    y = np.array([[60.0, 62.0, 64.0], [70.0, 71.0, 75.0]])
    # run means 62, 72; seed means 65, 66.5, 69.5; grand 67.1666...
    grand = y.mean()
    ms_run = 3 * ((62 - grand) ** 2 + (72 - grand) ** 2) / 1
    ms_seed = 2 * sum((m - grand) ** 2 for m in (65.0, 66.5, 69.5)) / 2
    df = (ms_run + ms_seed) ** 2 / (ms_run**2 / 1 + ms_seed**2 / 2)
    c = crossed_interval(y)
    assert (c.runs, c.seeds, c.run_means) == (2, 3, (62.0, 72.0))
    assert c.df == pytest.approx(df)
    assert c.ci95 == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt((ms_run + ms_seed) / 6))
    # the run-to-run gap makes it far wider than pooling the 6 values as if independent
    assert c.ci95 > summarize(y.ravel()).ci95_t


def test_never_below_the_unbiased_estimate():
    rng = np.random.default_rng(0)
    for _ in range(50):
        y = rng.normal(60, 3, size=(2, 5)) + rng.normal(0, 2, size=(2, 1))
        p, e = y.shape
        resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
        ms_resid = (resid**2).sum() / ((p - 1) * (e - 1))
        ms_run = e * ((y.mean(1) - y.mean()) ** 2).sum() / (p - 1)
        ms_seed = p * ((y.mean(0) - y.mean()) ** 2).sum() / (e - 1)
        unbiased = (ms_run + ms_seed - ms_resid) / (p * e)
        c = crossed_interval(y)
        half_sd = c.ci95 / stats.t.ppf(0.975, c.df)
        assert half_sd**2 >= unbiased - 1e-12


def test_degenerate_tables():
    assert crossed_interval([[50.0]]).ci95 is None
    assert crossed_interval([[50.0, 50.0], [50.0, 50.0]]).ci95 == 0.0
    with pytest.raises(ValueError, match="runs x seeds"):
        crossed_interval([])
