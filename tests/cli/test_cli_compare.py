"""`sarfewshot compare`: p-values, their adjustment, the bootstrap and the CSV, end to end."""

from __future__ import annotations

import csv
import random

import pytest

from sarfewshot.cli.main import main
from sarfewshot.results.records import write_record
from tests.results.recordkit import SHA_A, SHA_B, fake_record


def _runs(tmp_path):
    """Two checkpoints of one name over 2 protocols x 2 K x 5 seeds, a few points apart."""
    rng = random.Random(2)
    for protocol in ("linear", "knn"):
        for shots in (1, 5):
            for seed in range(1, 6):
                base = rng.uniform(20, 60)
                for sha, acc in ((SHA_A, base + rng.gauss(4, 2)), (SHA_B, base)):
                    rec = fake_record(sha=sha, protocol=protocol, shots=shots, seed=seed, acc=acc)
                    write_record(tmp_path / "run", rec)
    return str(tmp_path / "run")


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_reports_adjusted_p_values(tmp_path, capsys):
    run, out = _runs(tmp_path), tmp_path / "cmp.csv"
    a, b = f"sarjepa@{SHA_A[:12]}", f"sarjepa@{SHA_B[:12]}"
    assert main(["compare", run, "--a", a, "--b", b, "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "p t holm" in printed and "p Wilcoxon holm" in printed
    assert "adjusted across the 4 group(s) with Holm (family-wise error rate)" in printed
    assert "nested support sets" in printed and "optimistic" in printed
    assert "cannot give p < 0.05" in printed
    lines = _csv(out)
    assert [ln["dataset"] for ln in lines] == ["mstar"] * 4 + ["ALL"]
    assert [ln["p_adjust"] for ln in lines] == ["holm"] * 4 + [""]
    assert {ln["a"] for ln in lines} == {a} and {ln["b"] for ln in lines} == {b}
    groups = lines[:4]
    raw = sorted(float(ln["p_t"]) for ln in groups)
    smallest = min(groups, key=lambda ln: float(ln["p_t"]))
    assert float(smallest["p_t_adj"]) == pytest.approx(min(1.0, 4 * raw[0]))
    assert all(float(ln["p_t_adj"]) >= float(ln["p_t"]) for ln in groups)
    assert lines[-1]["p_t"] and lines[-1]["p_t_adj"] == "" and "optimistic" in lines[-1]["note"]
    assert lines[-1]["boot_low"] == "" and lines[-1]["bootstrap_resamples"] == ""


def test_compare_bh_and_bootstrap(tmp_path, capsys):
    run, out = _runs(tmp_path), tmp_path / "cmp.csv"
    args = ["compare", run, "--a", "sarjepa@aaaa", "--b", "sarjepa@bbbb", "--csv", str(out)]
    assert main([*args, "--adjust", "bh", "--bootstrap", "500", "--bootstrap-seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "Benjamini-Hochberg" in printed and "p t bh" in printed
    assert "bootstrap 95% CI" in printed and "500 resamples, seed 3" in printed
    lines = _csv(out)
    assert [ln["p_adjust"] for ln in lines[:4]] == ["bh"] * 4
    for ln in lines:
        assert float(ln["boot_low"]) <= float(ln["mean_diff"]) <= float(ln["boot_high"])
        assert ln["bootstrap_resamples"] == "500"
    assert main([*args, "--adjust", "bh", "--bootstrap", "500", "--bootstrap-seed", "3"]) == 0
    assert _csv(out) == lines  # seeded: the same interval again
    assert main([*args, "--adjust", "none"]) == 0
    assert all(ln["p_t_adj"] == ln["p_t"] for ln in _csv(out)[:4])


def test_compare_shows_na_with_the_reason(tmp_path, capsys):
    for seed, acc in ((1, 70.0), (2, 72.5), (3, 77.5)):
        write_record(tmp_path / "run", fake_record(seed=seed, acc=acc))
        write_record(
            tmp_path / "run", fake_record(backbone="random", sha=None, seed=seed, acc=acc - 20)
        )
    assert main(["compare", str(tmp_path / "run"), "--a", "sarjepa", "--b", "random"]) == 0
    printed = capsys.readouterr().out
    assert "n/a" in printed
    assert "mstar linear K=5: t-test n/a: every difference is +20.00 (no spread)" in printed


def test_compare_bad_flags(tmp_path, capsys):
    run = _runs(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["compare", run, "--a", "sarjepa@aaaa", "--b", "sarjepa@bbbb", "--adjust", "fdr"])
    assert exc.value.code == 2 and "--adjust" in capsys.readouterr().err
    assert (
        main(["compare", run, "--a", "sarjepa@aaaa", "--b", "sarjepa@bbbb", "--bootstrap", "-5"])
        == 2
    )
    assert "--bootstrap -5" in capsys.readouterr().err


def test_compare_help_warns_about_pooled_cells(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = capsys.readouterr().out
    assert "nested" in text and "optimistic" in text and "--adjust" in text


def _two_methods(tmp_path):
    """Two names, each with 2 pretraining runs, over 2 K x 5 seeds; b's runs straddle a's."""
    rng = random.Random(5)
    shas = {
        ("sarjepa", 0): SHA_A,
        ("sarjepa", 1): SHA_B,
        ("mae", 0): "c" * 64,
        ("mae", 1): "d" * 64,
    }
    run_fx = {("sarjepa", 0): 2.0, ("sarjepa", 1): -1.0, ("mae", 0): 5.0, ("mae", 1): -6.0}
    for shots in (1, 5):
        for seed in range(1, 6):
            base = rng.uniform(30, 60)
            for (name, r), sha in shas.items():
                acc = base + run_fx[(name, r)] + rng.gauss(0, 0.5)
                rec = fake_record(backbone=name, sha=sha, shots=shots, seed=seed, acc=acc)
                write_record(tmp_path / "run", rec)
    return str(tmp_path / "run")


def test_compare_uses_the_run_as_the_unit_when_a_name_has_several_runs(tmp_path, capsys):
    run, out = _two_methods(tmp_path), tmp_path / "cmp.csv"
    assert main(["compare", run, "--a", "sarjepa", "--b", "mae", "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "two-sample t-test on run means" in printed and "MDD 80%" in printed
    assert "95% CI runs x seeds" in printed and "over runs x seeds" in printed
    lines = _csv(out)
    assert [ln["unit"] for ln in lines] == ["run", "run"]
    assert all("unadjusted, over runs x seeds" in ln["interval"] for ln in lines)
    assert all(ln["family_size"] == "2" and ln["runs_a"] == "2" for ln in lines)
    assert all(float(ln["mdd80"]) > 0 and ln["df"] == "2" for ln in lines)
    assert all(ln["run_pairs"] == "4" for ln in lines)
    # the same data pooled: a seed-level test, which says it is conditional on the runs
    assert main(["compare", run, "--a", "sarjepa", "--b", "mae", "--pool", "--csv", str(out)]) == 0
    assert "conditional on these pretraining runs" in capsys.readouterr().out
    lines = _csv(out)
    assert {ln["unit"] for ln in lines} == {"seed"}
    assert all("conditional on these pretraining runs" in ln["interval"] for ln in lines)
    assert main(["compare", run, "--a", "sarjepa", "--b", "mae", "--run-test", "mixedlm"]) == 0
    assert "MixedLM" in capsys.readouterr().out


def test_compare_adjusts_over_a_pre_registered_family(tmp_path, capsys):
    run, out, fam = _two_methods(tmp_path), tmp_path / "cmp.csv", tmp_path / "family.csv"
    rows = ["a,b,dataset,protocol,shots"]
    rows += [f"sarjepa,mae,mstar,{p},{k}" for p in ("linear", "knn") for k in (1, 5, 10, 20)]
    fam.write_text("\n".join(rows) + "\n")
    args = ["compare", run, "--a", "sarjepa", "--b", "mae", "--csv", str(out)]
    assert main([*args, "--family", str(fam)]) == 0
    assert "pre-registered family of 8 comparison(s) (2 here" in capsys.readouterr().out
    lines = _csv(out)
    assert {ln["family_size"] for ln in lines} == {"8"}
    p = sorted(float(ln["p_t"]) for ln in lines)
    assert min(float(ln["p_t_adj"]) for ln in lines) == pytest.approx(min(1.0, 8 * p[0]))
    fam.write_text("a,b,dataset,protocol,shots\nsarjepa,mae,mstar,linear,1\n")
    assert main([*args, "--family", str(fam)]) == 2
    assert "not in the family" in capsys.readouterr().err


def test_an_unknown_backbone_lists_the_names_and_what_at_means(tmp_path, capsys):
    run = _runs(tmp_path)
    assert main(["compare", run, "--a", "sarjepa@aaaa", "--b", "mae"]) == 2
    err = capsys.readouterr().err
    assert "--b mae: no records of that backbone" in err
    assert f"sarjepa@{SHA_A[:12]}" in err and f"sarjepa@{SHA_B[:12]}" in err
    assert "weights sha256 prefix" in err and "architecture" in err


def test_random_names_its_only_architecture(tmp_path, capsys):
    rng = random.Random(3)
    for seed in range(1, 6):
        base = rng.uniform(20, 60)
        for backbone, sha, acc in (
            ("sarjepa", SHA_A, base + 5),
            ("random@irpe_vit_micro_patch8", None, base),
        ):
            rec = fake_record(backbone=backbone, sha=sha, seed=seed, acc=acc)
            write_record(tmp_path / "run", rec)
    assert main(["compare", str(tmp_path / "run"), "--a", "sarjepa", "--b", "random"]) == 0
    assert "random@irpe_vit_micro_patch8" in capsys.readouterr().out


def test_the_whole_pool_prints_as_k_all_in_the_table_and_minus_one_in_the_csv(tmp_path, capsys):
    """K = -1 (``--shots all``) is ``all`` in printed tables, -1 in keys and CSVs (README)."""
    rng = random.Random(5)
    for seed in range(1, 4):
        base = rng.uniform(20, 60)
        for sha, acc in ((SHA_A, base + rng.gauss(3, 1)), (SHA_B, base)):
            rec = fake_record(sha=sha, protocol="linear", shots=-1, seed=seed, acc=acc)
            write_record(tmp_path / "run", rec)
    out = tmp_path / "cmp.csv"
    a, b = f"sarjepa@{SHA_A[:12]}", f"sarjepa@{SHA_B[:12]}"
    assert main(["compare", str(tmp_path / "run"), "--a", a, "--b", b, "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| linear     | all " in printed and "| -1 " not in printed
    assert "linear K=all " in printed and "K=-1" not in printed
    assert [ln["shots"] for ln in _csv(out)] == ["-1", ""]


def test_run_unit_compare_prints_and_writes_the_contamination(tmp_path, capsys):
    from tests.results.test_results_compare import _two_runs_one_contaminated

    for rec in _two_runs_one_contaminated():
        write_record(tmp_path / "run", rec)
    out = tmp_path / "c.csv"
    assert (
        main(
            ["compare", str(tmp_path / "run"), "--a", "sarjepa", "--b", "mae"] + ["--csv", str(out)]
        )
        == 0
    )
    assert "contamination: sarjepa saw up to 7" in capsys.readouterr().out
    assert [(r["unit"], r["seen_a"], r["seen_b"]) for r in _csv(out)] == [("run", "7", "0")]
