"""`sarfewshot leaderboard` and `sarfewshot compare` end to end on records in tmp_path."""

from __future__ import annotations

import csv

import pytest

from sarfewshot.cli.main import main
from sarfewshot.results.records import write_record
from tests.results.recordkit import dassl_log, fake_record

ACCS = {1: 70.0, 2: 72.5, 3: 77.5}


def _two_machines(tmp_path):
    for seed, acc in ACCS.items():
        for backbone, sha, delta in (("sarjepa", "a" * 64, 0.0), ("random", None, -20.0)):
            rec = fake_record(backbone=backbone, sha=sha, seed=seed, acc=acc + delta)
            write_record(tmp_path / ("m1" if seed < 3 else "m2"), rec)
    write_record(tmp_path / "m2", fake_record(seed=1, acc=70.0))  # a duplicate of m1's cell
    return [str(tmp_path / "m1"), str(tmp_path / "m2")]


def test_leaderboard_end_to_end(tmp_path, capsys):
    dirs = _two_machines(tmp_path)
    out = tmp_path / "board"
    rc = main(
        [
            "leaderboard",
            *dirs,
            "--csv",
            str(out / "lb.csv"),
            "--markdown",
            str(out / "lb.md"),
            "--latex",
            str(out / "lb.tex"),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert "73.33 ± 3.12 (3)" in printed and "53.33 ± 3.12 (3)" in printed
    assert "population std (ddof 0)" in printed and "1 duplicate record" in printed
    with open(out / "lb.csv", newline="") as f:
        rows = {r["backbone"]: r for r in csv.DictReader(f)}
    assert rows["sarjepa"]["n_seeds"] == "3" and rows["sarjepa"]["n_duplicates"] == "1"
    assert round(float(rows["sarjepa"]["acc_ci95_normal"]), 2) == 3.53
    assert (out / "lb.md").exists() and (out / "lb.tex").exists()
    assert f"wrote {out / 'lb.csv'}" in printed


def test_leaderboard_plots_or_clear_error(tmp_path, capsys):
    """With the plots extra the PNGs appear; without it the CSV is still written and the
    error names the extra (CI installs only the test extra, so both paths get exercised)."""
    dirs = _two_machines(tmp_path)
    out = tmp_path / "board"
    rc = main(["leaderboard", *dirs, "--csv", str(out / "lb.csv"), "--plots"])
    captured = capsys.readouterr()
    assert (out / "lb.csv").exists()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert rc == 2 and "plots" in captured.err
    else:
        assert rc == 0 and (out / "shots_mstar_linear.png").exists()
        assert len(list(out.glob("confusion_*.png"))) == 2


def test_leaderboard_reads_dassl_runs(tmp_path, capsys):
    for seed, acc in ACCS.items():
        log = tmp_path / "output" / "mstar_soc" / "MIM_linear" / "vit_b16_10shots" / f"seed{seed}"
        log.mkdir(parents=True)
        (log / "log.txt").write_text(dassl_log(seed=seed, acc=acc, config=False))
    dirs = _two_machines(tmp_path)
    assert main(["leaderboard", *dirs, str(tmp_path / "output")]) == 0
    printed = capsys.readouterr().out
    assert "dassl *" in printed and "MSTAR_SOC K=10" not in printed
    assert "mstar_soc K=10" in printed and "one-decimal" in printed
    assert main(["leaderboard", str(tmp_path / "output"), "--no-dassl-logs"]) == 2
    assert "no records/*.json" in capsys.readouterr().err


def test_leaderboard_errors_name_the_folder(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path / "missing")]) == 2
    assert f"run folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["leaderboard", str(tmp_path / "empty")]) == 2
    assert f"no results under {tmp_path / 'empty'}" in capsys.readouterr().err
    bad = tmp_path / "bad" / "records" / "x.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert main(["leaderboard", str(tmp_path / "bad")]) == 2
    assert str(bad) in capsys.readouterr().err


def test_compare_end_to_end(tmp_path, capsys):
    dirs = _two_machines(tmp_path)
    out = tmp_path / "cmp.csv"
    assert main(["compare", *dirs, "--a", "sarjepa", "--b", "random", "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "+20.00" in printed and "3 paired cells" in printed
    with open(out, newline="") as f:
        lines = list(csv.DictReader(f))
    assert [ln["dataset"] for ln in lines] == ["mstar", "ALL"]
    assert float(lines[-1]["mean_diff"]) == pytest.approx(20.0)
    assert float(lines[-1]["ci95"]) == pytest.approx(0.0, abs=1e-9)
    assert main(["compare", *dirs, "--a", "sarjepa", "--b", "nope"]) == 2
    assert "--b nope: no records" in capsys.readouterr().err


def test_leaderboard_label_is_what_compare_takes(tmp_path, capsys):
    """One spelling per backbone: a label copied from the table works as --a/--b."""
    dirs = _two_machines(tmp_path)
    for seed, acc in ACCS.items():
        write_record(tmp_path / "m3", fake_record(sha="c" * 64, seed=seed, acc=acc - 5.0))
    assert main(["leaderboard", *dirs, str(tmp_path / "m3")]) == 0
    printed = capsys.readouterr().out
    labels = [ln.split("|")[1].strip() for ln in printed.splitlines() if "sarjepa@" in ln]
    assert labels == [f"sarjepa@{'a' * 12}", f"sarjepa@{'c' * 12}"]
    args = ["compare", *dirs, str(tmp_path / "m3"), "--a", labels[0], "--b", labels[1]]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"acc({labels[0]}) - acc({labels[1]})" in printed and "+5.00" in printed


def test_a_corrupt_record_names_the_file_and_skip_invalid(tmp_path, capsys):
    from sarfewshot.results.records import record_files, write_record
    from tests.results.recordkit import fake_record

    for seed in (1, 2):
        write_record(tmp_path / "run", fake_record(seed=seed))
    bad = record_files(tmp_path / "run")[0]
    bad.write_text('{"truncated": ')
    for command in ("leaderboard", "compare"):
        args = [command, str(tmp_path / "run")]
        args += ["--a", "sarjepa", "--b", "sarjepa"] if command == "compare" else []
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(bad) in err and "--skip-invalid" in err
    assert main(["leaderboard", str(tmp_path / "run"), "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "(1)" in captured.out


def test_leaderboard_reads_runs_by_default(tmp_path, capsys, monkeypatch):
    for seed, acc in ACCS.items():
        write_record(tmp_path / "runs", fake_record(seed=seed, acc=acc))
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard"]) == 0
    assert "73.33" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path / "runs")  # no runs/ here: the folder is named
    assert main(["leaderboard"]) == 2
    assert "run folder runs does not exist" in capsys.readouterr().err


def test_a_row_at_another_image_size_is_marked(tmp_path, capsys):
    for seed in ACCS:
        for backbone, protocol, size in (
            ("sarjepa", "linear", 64),
            ("random", "linear", 64),
            ("sarjepa", "finetune", 224),
        ):
            config = {"INPUT": {"SIZE": size}, "PROTOCOL": protocol}
            rec = fake_record(backbone=backbone, protocol=protocol, seed=seed, config=config)
            write_record(tmp_path / "run", rec)
    assert main(["leaderboard", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "sarjepa [224 px]" in out and "random [" not in out
    assert out.count("[224 px]") == 1 and "other than the 64 px of most rows" in out


def test_include_diverged_lists_cells_that_stopped_before_scoring(tmp_path, capsys):
    run = tmp_path / "run"
    for seed in (1, 2):
        write_record(run, fake_record(seed=seed, acc=70.0 + seed))
    nan = fake_record(seed=3, status="failed")  # the loss went non-finite: no metrics
    nan.update(status="diverged", error="the training loss became non-finite at step 4")
    write_record(run, nan)
    scored = fake_record(seed=4, status="failed")
    scored.update(status="diverged", error="the training loss ended far above its start")
    scored["metrics"] = {"accuracy": 20.0}
    write_record(run, scored)
    out = tmp_path / "board.csv"
    assert main(["leaderboard", str(run), "--include-diverged", "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    assert "71.00" not in text and "(3, 2 diverged)" in text  # seeds 1, 2 and the scored one
    assert "1 diverged cell(s) stopped before they were scored" in text
    (row,) = csv.DictReader(out.open())
    assert (row["n_seeds"], row["seeds"], row["n_diverged"], row["n_unscored"]) == (
        "3", "1;2;4", "2", "1",
    )  # fmt: skip
    assert float(row["acc_mean"]) == pytest.approx((71.0 + 72.0 + 20.0) / 3)
    assert main(["leaderboard", str(run)]) == 0  # not asked: neither diverged cell averaged
    text = capsys.readouterr().out
    assert "71.50" in text and "stopped before they were scored" not in text
