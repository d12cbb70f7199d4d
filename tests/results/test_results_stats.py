"""Statistics behind the leaderboard: CoOp's numbers and the Student-t interval (scipy.stats)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import sarfewshot.results.aggregate as aggregate
from sarfewshot.results.aggregate import summarize

STUDY_CSV = (
    Path(__file__).resolve().parents[2] / "docs" / "mstar_study_first_edition" / "leaderboard.csv"
)


def test_coop_example_numbers():
    s = summarize([70.0, 72.5, 77.5])
    assert s.n == 3
    assert f"{s.mean:.2f} ± {s.std_pop:.2f}" == "73.33 ± 3.12"
    assert f"{s.ci95_normal:.2f}" == "3.53"
    assert s.std_pop == pytest.approx(np.std([70.0, 72.5, 77.5], ddof=0), abs=1e-12)
    assert s.std_sample == pytest.approx(np.std([70.0, 72.5, 77.5], ddof=1), abs=1e-12)
    assert s.ci95_t == pytest.approx(4.302652729749464 * s.std_sample / math.sqrt(3), rel=1e-14)


def test_single_value_has_no_sample_spread():
    s = summarize([81.25])
    assert (s.mean, s.std_pop, s.ci95_normal) == (81.25, 0.0, 0.0)
    assert s.std_sample is None and s.ci95_t is None
    with pytest.raises(ValueError):
        summarize([])


@pytest.mark.parametrize("n", [2, 3, 5, 6, 10, 31, 200])
def test_summarize_agrees_with_scipy_stats(n):
    values = np.random.default_rng(n).uniform(10.0, 95.0, size=n)
    s = summarize(values.tolist())
    low, high = stats.t.interval(0.95, n - 1, loc=values.mean(), scale=stats.sem(values))
    assert abs(s.mean - values.mean()) < 1e-12
    assert abs(s.std_pop - values.std(ddof=0)) < 1e-12
    assert abs(s.std_sample - values.std(ddof=1)) < 1e-12
    assert abs(s.ci95_t - (high - values.mean())) < 1e-12
    assert abs(s.ci95_t - (values.mean() - low)) < 1e-12


def test_no_hand_written_distribution_code():
    """The t quantile comes from scipy.stats; the module carries no incomplete-beta solver."""
    for name in ("student_t_ppf", "student_t_cdf", "_reg_inc_beta", "_beta_cf"):
        assert not hasattr(aggregate, name), name


def test_committed_study_intervals_unchanged():
    """The MSTAR study's committed CSV (made with the former hand-written t) recomputes."""
    five = summarize([26.0, 31.5, 19.25, 22.0, 28.75])
    assert five.ci95_t == float(stats.t.ppf(0.975, 4)) * five.std_sample / math.sqrt(5)
    rows = list(csv.DictReader(STUDY_CSV.open(newline="")))
    assert len(rows) == 96 and {r["n_seeds"] for r in rows} == {"5"}
    for r in rows:
        half = float(stats.t.ppf(0.975, 4)) * float(r["acc_std_sample"]) / math.sqrt(5)
        assert half == float(r["acc_ci95"])  # bit for bit
