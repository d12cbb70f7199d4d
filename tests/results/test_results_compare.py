"""Paired comparison numbers, checked by hand."""

from __future__ import annotations

import math

import pytest

from sarfewshot.errors import SarFewShotError
from sarfewshot.results.compare import paired_compare
from tests.results.recordkit import SHA_B, fake_record

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
