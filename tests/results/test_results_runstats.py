"""Run-unit statistics: known answers of each test, and a simulation where the run dominates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sarfewshot.errors import SarFewShotError
from sarfewshot.results.compare import adjust_pvalues, paired_tests, read_family
from sarfewshot.results.runstats import (
    agreement,
    mdd_paired,
    mdd_run_means,
    mixedlm_test,
    run_means_test,
)
from sarfewshot.utils.seeding import numpy_rng


def test_run_means_test_known_answer():
    # pooled variance (0.5 + 2) / 2 = 1.25, SE sqrt(1.25 (1/2 + 1/2)), t = -2.5 / SE = -sqrt(5);
    # at 2 degrees of freedom the two-sided p is 1 - |t| / sqrt(t^2 + 2) = 1 - sqrt(5/7)
    res = run_means_test([1.0, 2.0], [3.0, 5.0])
    assert res["diff"] == pytest.approx(-2.5) and res["df"] == 2
    assert res["p"] == pytest.approx(1 - math.sqrt(5 / 7), rel=1e-12)
    half = stats.t.ppf(0.975, 2) * math.sqrt(1.25)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((-2.5 - half, -2.5 + half))
    # one run per arm: no degree of freedom left; equal runs: no spread
    assert run_means_test([1.0], [2.0])["p"] is None
    assert "no spread" in run_means_test([1.0, 1.0], [2.0, 2.0])["note"]


def _design(rng, runs, seeds, sd_run, sd_seed, sd_e, effect=0.0):
    """runs x seeds tables of two arms sharing seed effects, with a run effect per run."""
    seed_fx = rng.normal(0, sd_seed, seeds)
    a = (
        50
        + effect
        + rng.normal(0, sd_run, (runs, 1))
        + seed_fx
        + rng.normal(0, sd_e, (runs, seeds))
    )
    b = 50 + rng.normal(0, sd_run, (runs, 1)) + seed_fx + rng.normal(0, sd_e, (runs, seeds))
    return a, b


@pytest.mark.parametrize("runs", [2, 3])
def test_mixedlm_equals_the_exact_test_on_a_balanced_design(runs):
    # balanced nested design, run variance estimated > 0: REML gives the ANOVA estimates, so the
    # Wald t on runs - 2 degrees of freedom is the t-test on run means
    a, b = _design(numpy_rng(7, "mixedlm", runs), runs, 5, 3.0, 2.0, 1.0, effect=2.0)
    exact = run_means_test(a.mean(axis=1), b.mean(axis=1))
    mixed = mixedlm_test(a, b)
    assert mixed["diff"] == pytest.approx(exact["diff"], abs=1e-8)
    assert mixed["p"] == pytest.approx(exact["p"], rel=1e-4)
    assert mixed["ci_low"] == pytest.approx(exact["ci_low"], rel=1e-4)


def test_mixedlm_uses_runs_with_missing_seeds():
    a, b = _design(numpy_rng(8, "missing"), 3, 5, 3.0, 2.0, 1.0)
    a[0, 4] = np.nan
    res = mixedlm_test(a, b)
    assert res["p"] is not None and res["df"] == 4


def test_agreement_probability_under_no_difference():
    # all of 2 x 2: both runs of one arm above both of the other, 2 orders of 4!/(2!2!) = 1/3
    assert agreement([5.0, 6.0], [1.0, 2.0]) == {
        "agree": 4,
        "pairings": 4,
        "p": pytest.approx(1 / 3),
    }
    assert agreement([5.0, 6.0], [1.0])["p"] == pytest.approx(2 / 3)  # 2 x 1: 2 / C(3, 1)
    assert agreement([5, 6, 7], [1, 2, 3])["p"] == pytest.approx(2 / 20)  # 2 / C(6, 3)
    # 3 of 4: U in {0, 1, 3, 4} of the 6 equally likely orders
    assert agreement([5.0, 1.5], [1.0, 2.0]) == {
        "agree": 3,
        "pairings": 4,
        "p": pytest.approx(2 / 3),
    }
    assert agreement([5.0, 2.0], [1.0, 2.0])["p"] is None  # a tie


def test_minimum_detectable_difference_reaches_80_percent_power():
    diffs = [1.0, 3.0, 2.0, 4.0, 0.5]
    mdd, n, sd = mdd_paired(diffs), 5, np.std(diffs, ddof=1)
    crit = stats.t.ppf(0.975, n - 1)  # textbook power of the one-sample t: noncentral t
    nc = mdd / sd * math.sqrt(n)
    power = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
    assert power == pytest.approx(0.8, abs=1e-4)
    a, b = [43.0, 35.4], [33.1, 30.8]
    mdd = mdd_run_means(a, b)
    sp = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    crit, nc = stats.t.ppf(0.975, 2), mdd / sp * math.sqrt(2 * 2 / 4)
    power = stats.nct.sf(crit, 2, nc) + stats.nct.cdf(-crit, 2, nc)
    assert power == pytest.approx(0.8, abs=1e-4)
    assert mdd_run_means([1.0], [2.0]) is None


def test_family_adjustment_counts_the_absent_members_as_p_one():
    assert adjust_pvalues([0.01, 0.04], "holm", family_size=5) == pytest.approx([0.05, 0.16])
    assert adjust_pvalues([0.01, 0.04], "holm") == pytest.approx([0.02, 0.04])
    with pytest.raises(SarFewShotError, match="family of 1"):
        adjust_pvalues([0.01, 0.04], "holm", family_size=1)


def test_read_family_names_the_flag(tmp_path):
    path = tmp_path / "family.csv"
    path.write_text("a,b,dataset,protocol,shots\nx,y,mstar,linear,5\nx,y,mstar,linear,5\n")
    assert read_family([str(path)]) == [("x", "y", "mstar", "linear", "5")]
    path.write_text("a,b\nx,y\n")
    with pytest.raises(SarFewShotError, match="--family .* line 2"):
        read_family([str(path)])
    with pytest.raises(SarFewShotError, match="--family"):
        read_family([str(tmp_path / "absent.csv")])


def _rejections(sims: int, runs: int, mixed: bool = False) -> tuple[float, float]:
    """Null rejection rates (alpha 0.05) of the seed-only test and the run-unit test."""
    rng = numpy_rng(2026, "run-dominated-null", runs, mixed)
    seed_only = run_unit = 0
    for _ in range(sims):
        a, b = _design(rng, runs, 5, sd_run=3.0, sd_seed=2.0, sd_e=1.0)
        # compare --pool: the runs' mean per seed, paired over the seeds
        seed_only += paired_tests(a.mean(axis=0), b.mean(axis=0))["p_t"] < 0.05
        test = mixedlm_test(a, b) if mixed else run_means_test(a.mean(axis=1), b.mean(axis=1))
        run_unit += test["p"] < 0.05
    return seed_only / sims, run_unit / sims


def test_when_the_run_dominates_only_the_run_unit_test_holds_its_level():
    seed_only, run_unit = _rejections(400, runs=2)
    assert seed_only > 0.5  # conditional on the runs: the runs' luck reads as an effect
    # exact under the model; 400 draws at 5 %: binomial SD 1.1 %
    assert 0.02 <= run_unit <= 0.085


def test_mixedlm_holds_its_level_when_the_run_dominates():
    seed_only, run_unit = _rejections(40, runs=3, mixed=True)
    assert seed_only > 0.5 and run_unit <= 0.15


def test_run_compare_builds_run_means_over_the_seeds_every_run_has():
    from sarfewshot.results.runcompare import run_compare
    from tests.results.recordkit import SHA_A, SHA_B, fake_record

    acc = {  # (name, sha) -> accuracies of seeds 1-4; d lacks seed 4
        ("sarjepa", SHA_A): [60.0, 62.0, 64.0, 66.0],
        ("sarjepa", SHA_B): [50.0, 53.0, 51.0, 70.0],
        ("mae", "c" * 64): [55.0, 58.0, 56.0, 57.0],
        ("mae", "d" * 64): [40.0, 45.0, 41.0, None],
    }
    recs = [
        fake_record(backbone=name, sha=sha, seed=seed, acc=a)
        for (name, sha), values in acc.items()
        for seed, a in enumerate(values, start=1)
        if a is not None
    ]
    res = run_compare(recs, "sarjepa", "mae")
    (g,) = res["groups"]
    means_a = [np.mean([60, 62, 64]), np.mean([50, 53, 51])]
    means_b = [np.mean([55, 58, 56]), np.mean([40, 45, 41])]
    exact = run_means_test(means_a, means_b)
    assert (g["runs_a"], g["runs_b"], g["seeds"]) == (2, 2, 3)
    assert g["p"] == pytest.approx(exact["p"]) and g["mean_diff"] == pytest.approx(exact["diff"])
    assert "3 of 4 seeds" in g["note"] and res["family_size"] == 1
    # 51.3 (second sarjepa run) is below 56.3 (first mae run): 3 of 4 pairings, P = 4/6
    assert (g["run_pairs_agree"], g["p_agree"]) == (3, pytest.approx(2 / 3))
    mixed = run_compare(recs, "sarjepa", "mae", run_test="mixedlm")["groups"][0]
    assert mixed["p"] is not None and mixed["df"] == 2  # every value, seed 4 included
    with pytest.raises(SarFewShotError, match="--run-test"):
        run_compare(recs, "sarjepa", "mae", run_test="bayes")


def test_run_compare_refuses_cells_of_two_dataset_versions():
    """The run-unit test pairs seeds across runs; a TEST set that changed between them is no
    pairing: refused naming both fingerprints, unless allow_data_change says so in the note."""
    from sarfewshot.results.runcompare import run_compare
    from tests.results.recordkit import SHA_A, SHA_B, fake_record

    recs = []
    for name, shas, version in (("sarjepa", (SHA_A, SHA_B), "1" * 64), ("mae", "cd", "2" * 64)):
        for sha in shas:
            for seed in (1, 2, 3):
                rec = fake_record(backbone=name, sha=sha * (64 // len(sha)), seed=seed, acc=50.0)
                rec["dataset"]["fingerprint"] = {"sha256": version}
                recs.append(rec)
    with pytest.raises(SarFewShotError, match="111111111111.*222222222222"):
        run_compare(recs, "sarjepa", "mae")
    res = run_compare(recs, "sarjepa", "mae", allow_data_change=True)
    assert "111111111111" in res["data_change"] and "222222222222" in res["data_change"]
