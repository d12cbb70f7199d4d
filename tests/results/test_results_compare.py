"""Paired comparison numbers, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sarfewshot.errors import SarFewShotError
from sarfewshot.results.compare import adjust_pvalues, paired_compare, paired_tests
from sarfewshot.utils.seeding import numpy_rng
from tests.results.recordkit import SHA_A, SHA_B, fake_record

T975_DF2 = 4.302652729749464  # t_{0.975, 2}
T975_DF5 = 2.570581835636314  # t_{0.975, 5}


def _runs():
    recs = []
    for shots, a_accs, b_accs in ((1, (70, 72, 74), (68, 71, 70)), (5, (80, 81, 85), (79, 81, 80))):
        for seed, (a, b) in enumerate(zip(a_accs, b_accs), start=1):
            recs.append(fake_record(backbone="sarjepa", shots=shots, seed=seed, acc=float(a)))
            recs.append(
                fake_record(backbone="random", sha=None, shots=shots, seed=seed, acc=float(b))
            )
    return recs


def test_paired_numbers_by_hand():
    res = paired_compare(_runs(), "sarjepa", "random")
    # diffs: K=1 -> 2, 1, 4 ; K=5 -> 1, 0, 5
    g1, g5 = res["groups"]
    assert (g1["shots"], g1["n"], g5["shots"], g5["n"]) == (1, 3, 5, 3)
    assert g1["mean_diff"] == pytest.approx(7 / 3)
    assert g1["std_diff"] == pytest.approx(math.sqrt(7 / 3))  # ((1/3)^2+(4/3)^2+(5/3)^2)/2
    assert g1["ci95"] == pytest.approx(T975_DF2 * math.sqrt(7 / 3) / math.sqrt(3))
    assert g1["ci_low"] == pytest.approx(7 / 3 - g1["ci95"])
    assert (g1["mean_a"], g1["mean_b"]) == (72.0, pytest.approx(209 / 3))
    assert g5["mean_diff"] == pytest.approx(2.0)
    assert g5["ci95"] == pytest.approx(T975_DF2 * math.sqrt(7.0) / math.sqrt(3))
    # overall: diffs 2,1,4,1,0,5 -> mean 13/6
    assert res["n"] == 6 and res["mean_diff"] == pytest.approx(13 / 6)
    sd = math.sqrt(sum((d - 13 / 6) ** 2 for d in (2, 1, 4, 1, 0, 5)) / 5)
    assert res["ci95"] == pytest.approx(T975_DF5 * sd / math.sqrt(6))
    assert [c["diff"] for c in res["cells"]] == [2.0, 1.0, 4.0, 1.0, 0.0, 5.0]
    swapped = paired_compare(_runs(), "random", "sarjepa")
    assert swapped["mean_diff"] == pytest.approx(-13 / 6)


def test_only_same_split_cells_pair():
    recs = _runs()
    recs.append(fake_record(backbone="sarjepa", shots=10, seed=1, acc=90.0))
    recs.append(
        fake_record(
            backbone="random", sha=None, shots=10, seed=1, acc=10.0, split_sha="another-split"
        )
    )
    recs.append(fake_record(backbone="sarjepa", shots=20, seed=1, acc=90.0))
    res = paired_compare(recs, "sarjepa", "random")
    assert res["n"] == 6
    assert res["skipped"] == {"only_a": 1, "only_b": 0, "split_mismatch": 1, "unknown_split": 0}


def test_ambiguous_and_missing_backbones():
    recs = _runs() + [fake_record(backbone="sarjepa", sha=SHA_B, shots=1, seed=1, acc=50.0)]
    with pytest.raises(SarFewShotError, match="--a sarjepa: several weights"):
        paired_compare(recs, "sarjepa", "random")
    res = paired_compare(recs, "sarjepa@bbbb", "random")
    assert res["n"] == 1 and res["mean_diff"] == pytest.approx(-18.0) and res["ci95"] is None
    with pytest.raises(SarFewShotError, match="--b mae: no records"):
        paired_compare(recs, "random", "mae")
    with pytest.raises(SarFewShotError, match="share no cell"):
        paired_compare(
            [fake_record(), fake_record(backbone="x", sha=None, shots=2)], "sarjepa", "x"
        )


def test_random_init_label_with_at_sign_is_a_whole_name():
    """The grid labels weight-less backbones ``random@<arch>``; that is not NAME@SHA."""
    recs = [
        fake_record(backbone=name, sha=None, seed=seed, acc=acc + seed)
        for name, acc in (("random@irpe_vit_micro_patch8", 20.0), ("random@vit_tiny", 10.0))
        for seed in (1, 2, 3)
    ]
    res = paired_compare(recs, "random@irpe_vit_micro_patch8", "random@vit_tiny")
    assert res["n"] == 3 and res["mean_diff"] == pytest.approx(10.0)


# ----------------------------------------------------------------------------- tests, adjustment


def test_p_values_by_hand():
    """df = 2 has a closed-form t tail, P(|T| > t) = 1 - t / sqrt(t^2 + 2); Wilcoxon is exact."""
    g1, g5 = paired_compare(_runs(), "sarjepa", "random")["groups"]
    # K=1: diffs 2, 1, 4 -> t = mean / (sd / sqrt(3)) = sqrt(7)
    assert g1["p_t"] == pytest.approx(1 - math.sqrt(7) / 3, rel=1e-12)
    assert g1["p_wilcoxon"] == pytest.approx(2 / 8)  # all 3 positive: 2 * 1/2^3
    # K=5: diffs 1, 0, 5 -> t = sqrt(12/7); Wilcoxon drops the 0: 2 * 1/2^2
    assert g5["p_t"] == pytest.approx(1 - math.sqrt(12 / 26), rel=1e-12)
    assert g5["p_wilcoxon"] == pytest.approx(2 / 4)
    # Holm over the two groups: 2 * p_min, then max(that, p_max)
    assert g1["p_t_adj"] == pytest.approx(2 * g1["p_t"])
    assert g5["p_t_adj"] == pytest.approx(g5["p_t"])
    assert (g1["p_wilcoxon_adj"], g5["p_wilcoxon_adj"]) == (pytest.approx(0.5), 0.5)
    assert g1["note"] == g5["note"] == ""


def test_adjust_pvalues_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust_pvalues(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_pvalues(p, "none") == p
    # undefined tests are not counted in the family
    assert adjust_pvalues([0.01, None, 0.04], "holm") == [pytest.approx(0.02), None, 0.04]
    assert adjust_pvalues([0.6, 0.7, 0.9], "holm") == [1.0, 1.0, 1.0]
    assert adjust_pvalues([None], "bh") == [None]
    with pytest.raises(SarFewShotError, match="--adjust bonferroni"):
        adjust_pvalues(p, "bonferroni")


def test_adjust_bh_agrees_with_scipy():
    p = np.random.default_rng(3).uniform(0, 0.2, size=16)
    assert adjust_pvalues(list(p), "bh") == pytest.approx(list(stats.false_discovery_control(p)))


def test_paired_compare_adjust_options():
    res = paired_compare(_runs(), "sarjepa", "random", adjust="bh")
    raw = [g["p_t"] for g in res["groups"]]
    assert res["adjust"] == "bh"
    assert [g["p_t_adj"] for g in res["groups"]] == adjust_pvalues(raw, "bh")
    none = paired_compare(_runs(), "sarjepa", "random", adjust="none")
    assert [g["p_t_adj"] for g in none["groups"]] == raw
    with pytest.raises(SarFewShotError, match="--adjust x"):
        paired_compare(_runs(), "sarjepa", "random", adjust="x")


def test_degenerate_differences_are_na_with_a_reason():
    assert paired_tests([70.1, 80.2], [70.1, 80.2]) == {
        "p_t": 1.0,
        "p_wilcoxon": 1.0,
        "note": "all differences are 0",
    }
    same = paired_tests([70.1, 72.6, 77.6], [50.1, 52.6, 57.6])  # +20 up to float noise
    assert same["p_t"] is None and "every difference is +20.00 (no spread)" in same["note"]
    assert same["p_wilcoxon"] == pytest.approx(0.25)
    single = paired_tests([71.0], [70.0])
    assert single["p_t"] is None and "single pair" in single["note"]


def test_tests_agree_with_scipy():
    rng = np.random.default_rng(7)
    a = rng.uniform(20, 60, size=9)
    b = a - rng.normal(2, 3, size=9)
    res = paired_tests(list(a), list(b))
    assert res["p_t"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert res["p_wilcoxon"] == pytest.approx(stats.wilcoxon(np.round(a - b, 9)).pvalue)


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_interval_is_seeded_by_the_toolkit():
    res = paired_compare(_runs(), "sarjepa", "random", bootstrap=999, bootstrap_seed=4)
    g1 = res["groups"][0]
    direct = stats.bootstrap(
        (np.array([2.0, 1.0, 4.0]),),
        np.mean,
        n_resamples=999,
        method="percentile",
        rng=numpy_rng(4, "compare-bootstrap", "mstar", "linear", 1),
    ).confidence_interval
    assert (g1["boot_low"], g1["boot_high"]) == (direct.low, direct.high)
    assert 1.0 <= g1["boot_low"] <= 7 / 3 <= g1["boot_high"] <= 4.0
    again = paired_compare(_runs(), "sarjepa", "random", bootstrap=999, bootstrap_seed=4)
    assert again["groups"] == res["groups"] and again["boot_low"] == res["boot_low"]
    pooled = stats.bootstrap(
        (np.array([2.0, 1.0, 4.0, 1.0, 0.0, 5.0]),),
        np.mean,
        n_resamples=999,
        method="percentile",
        rng=numpy_rng(5, "compare-bootstrap", "ALL"),
    ).confidence_interval
    other = paired_compare(_runs(), "sarjepa", "random", bootstrap=999, bootstrap_seed=5)
    assert (other["boot_low"], other["boot_high"]) == (pooled.low, pooled.high)
    plain = paired_compare(_runs(), "sarjepa", "random")
    assert plain["bootstrap"] == 0 and plain["groups"][0]["boot_low"] is None
    with pytest.raises(SarFewShotError, match="--bootstrap -1"):
        paired_compare(_runs(), "sarjepa", "random", bootstrap=-1)


def test_bootstrap_of_a_single_pair_is_na():
    recs = [fake_record(acc=70.0), fake_record(backbone="random", sha=None, acc=60.0)]
    res = paired_compare(recs, "sarjepa", "random", bootstrap=100)
    assert res["boot_low"] is None and "bootstrap n/a: a single pair" in res["note"]


# ----------------------------------------------------------------------------- labels


def test_compare_takes_and_prints_the_leaderboard_spelling():
    recs = _runs() + [fake_record(backbone="sarjepa", sha=SHA_B, shots=1, seed=1, acc=50.0)]
    recs.append(fake_record(backbone="random", sha=SHA_B, shots=1, seed=1, acc=40.0))
    for spec in (f"sarjepa@{SHA_A[:12]}", "sarjepa@aaaa", f"sarjepa [{SHA_A[:12]}]"):
        res = paired_compare(recs, spec, "random@none")
        assert (res["a"], res["b"]) == (f"sarjepa@{SHA_A[:12]}", "random@none")
        assert res["n"] == 6
    res = paired_compare(recs, "sarjepa@BBBB", f"random@{SHA_B[:12]}")
    assert (res["a"], res["b"], res["n"]) == (f"sarjepa@{SHA_B[:12]}", f"random@{SHA_B[:12]}", 1)
    # a name with one weights file prints bare, as in the leaderboard
    assert paired_compare(_runs(), f"sarjepa@{SHA_A[:8]}", "random")["a"] == "sarjepa"


def test_pool_averages_the_weights_files_per_cell():
    recs = _runs()  # sarjepa (SHA_A): K=1 -> 70, 72, 74; random: 68, 71, 70
    for seed, acc in zip((1, 2, 3), (60.0, 62.0, 70.0)):
        recs.append(fake_record(backbone="sarjepa", sha=SHA_B, shots=1, seed=seed, acc=acc))
    # a cell only the second file has on another split, and one only the first file has (K=5)
    recs.append(fake_record(backbone="sarjepa", sha=SHA_B, shots=5, seed=1, acc=1.0, split_sha="x"))
    with pytest.raises(SarFewShotError, match="--pool to average"):
        paired_compare(recs, "sarjepa", "random")
    res = paired_compare(recs, "sarjepa", "random", pool=True)
    assert res["a"] == "sarjepa (mean of 2 weights)"
    (group,) = res["groups"]  # K=5 is left out: seed 1 is on another split, 2-3 only in SHA_A
    assert (group["shots"], group["n"]) == (1, 3)
    # pooled: 65, 67, 72 against 68, 71, 70 -> diffs -3, -4, +2
    assert [c["diff"] for c in res["cells"]] == [-3.0, -4.0, 2.0]
    assert group["mean_diff"] == pytest.approx(-5 / 3)


def _two_runs_one_contaminated() -> list[dict]:
    """sarjepa: two runs (SHA_A clean, SHA_B saw 7 scored images); mae: two clean runs."""
    from tests.results.recordkit import SHA_A, SHA_B, fake_record

    recs = []
    for name, sha, seen in (
        ("sarjepa", SHA_A, 0),
        ("sarjepa", SHA_B, 7),
        ("mae", "c" * 64, 0),
        ("mae", "d" * 64, 0),
    ):
        for seed in (1, 2, 3):
            rec = fake_record(backbone=name, sha=sha, seed=seed, acc=50.0 + seed + ord(sha[0]) % 5)
            rec["contamination"] = {"seen": seen, "scored": 18, "method": "sha256"}
            recs.append(rec)
    return recs


def test_pool_keeps_the_contamination_of_every_pooled_run():
    """A pooled cell stands for every run: a run that saw scored images must not vanish
    behind a clean first run."""
    res = paired_compare(_two_runs_one_contaminated(), "sarjepa", "mae", pool=True)
    assert res["seen_a"] == 7 and all(g["seen_a"] == 7 for g in res["groups"])


def test_run_unit_compare_carries_the_contamination_columns():
    from sarfewshot.results.runcompare import run_compare

    res = run_compare(_two_runs_one_contaminated(), "sarjepa", "mae")
    assert res["seen_a"] == 7 and res["seen_b"] == 0
    assert [(g["seen_a"], g["seen_b"]) for g in res["groups"]] == [(7, 0)]


def test_compare_refuses_weights_on_both_sides():
    """A pool that holds b's own weights (or a name against itself) compares a run with
    itself: refused naming the shared weights, at either unit."""
    from sarfewshot.results.runcompare import run_compare
    from tests.results.recordkit import SHA_B

    recs = _two_runs_one_contaminated()
    with pytest.raises(SarFewShotError, match="bbbbbbbbbbbb"):
        paired_compare(recs, "sarjepa", f"sarjepa@{SHA_B[:12]}", pool=True)
    with pytest.raises(SarFewShotError, match="--a sarjepa and --b sarjepa"):
        run_compare(recs, "sarjepa", "sarjepa")
    with pytest.raises(SarFewShotError, match="bbbbbbbbbbbb"):
        paired_compare(recs, f"sarjepa@{SHA_B[:12]}", f"sarjepa@{SHA_B[:8]}")


def test_a_cell_on_two_dataset_versions_is_named_as_such():
    """Two run folders of one backbone on two versions of the folder: the error names the
    versions, not 'several configs' (the configs are the same)."""
    recs = []
    for version in ("1" * 64, "2" * 64):
        rec = fake_record(backbone="sarjepa", seed=1)
        rec["dataset"]["fingerprint"] = {"sha256": version}
        recs.append(rec)
    recs.append(fake_record(backbone="mae", sha=SHA_B, seed=1))
    with pytest.raises(SarFewShotError, match=r"two versions of the dataset folder.*111111111111"):
        paired_compare(recs, "sarjepa", "mae")
