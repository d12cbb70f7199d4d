"""Statistics behind the leaderboard: CoOp's numbers and the Student-t quantile."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sarfewshot.results.aggregate import student_t_cdf, student_t_ppf, summarize


def test_coop_example_numbers():
    s = summarize([70.0, 72.5, 77.5])
    assert s.n == 3
    assert f"{s.mean:.2f} ± {s.std_pop:.2f}" == "73.33 ± 3.12"
    assert f"{s.ci95_normal:.2f}" == "3.53"
    assert s.std_pop == pytest.approx(np.std([70.0, 72.5, 77.5], ddof=0), abs=1e-12)
    assert s.std_sample == pytest.approx(np.std([70.0, 72.5, 77.5], ddof=1), abs=1e-12)
    assert s.ci95_t == pytest.approx(student_t_ppf(0.975, 2) * s.std_sample / math.sqrt(3))


def test_single_value_has_no_sample_spread():
    s = summarize([81.25])
    assert (s.mean, s.std_pop, s.ci95_normal) == (81.25, 0.0, 0.0)
    assert s.std_sample is None and s.ci95_t is None
    with pytest.raises(ValueError):
        summarize([])


@pytest.mark.parametrize(
    "df, expected",
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452)],
)
def test_t_quantile_table(df, expected):
    assert student_t_ppf(0.975, df) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.9999, 0.2, 0.01])
def test_t_quantile_closed_forms(p):
    # df=1 is Cauchy, df=2 has an algebraic inverse: both pin the solver to ~1e-12.
    assert student_t_ppf(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-11)
    assert student_t_ppf(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-11)


def test_t_quantile_properties():
    assert student_t_ppf(0.5, 7) == 0.0
    assert student_t_ppf(0.025, 5) == pytest.approx(-student_t_ppf(0.975, 5), rel=1e-14)
    assert student_t_ppf(0.975, 1e7) == pytest.approx(1.959963985, abs=1e-6)
    for df in (0.7, 3, 12.5, 60):
        for p in (0.8, 0.975, 0.999):
            assert student_t_cdf(student_t_ppf(p, df), df) == pytest.approx(p, abs=1e-13)
    values = [student_t_ppf(0.975, df) for df in range(1, 40)]
    assert all(a > b for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError):
        student_t_ppf(1.0, 3)
    with pytest.raises(ValueError):
        student_t_ppf(0.9, 0)
