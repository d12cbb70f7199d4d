"""Leaderboard table layout and the CSV / Markdown / LaTeX files."""

from __future__ import annotations

import csv
import random

import numpy as np

from sarfewshot.results.aggregate import aggregate_records
from sarfewshot.results.export import (
    CSV_COLUMNS,
    latex_escape,
    table_text,
    write_csv,
    write_latex,
    write_markdown,
)
from sarfewshot.results.records import iter_records, write_record
from tests.results.recordkit import fake_record


def _grid():
    rng = random.Random(0)
    recs = []
    for backbone, sha in (("sarjepa", "a" * 64), ("random", None)):
        for protocol in ("linear", "knn"):
            for dataset in ("mstar_soc", "fusar"):
                for shots in (1, 5, 10):
                    for seed in (1, 2, 3):
                        acc = round(rng.uniform(30, 95), 6)
                        recs.append(
                            fake_record(
                                backbone=backbone,
                                sha=sha,
                                protocol=protocol,
                                dataset=dataset,
                                shots=shots,
                                seed=seed,
                                acc=acc,
                            )
                        )
    return recs


def test_table_layout():
    recs = [fake_record(seed=s, acc=a) for s, a in ((1, 70.0), (2, 72.5), (3, 77.5))]
    recs += [fake_record(seed=1, shots=10, acc=80.0), fake_record(seed=1, shots=2, acc=60.0)]
    recs += [fake_record(dataset="fusar", seed=1, acc=50.0, protocol="knn")]
    text = table_text(aggregate_records(recs))
    lines = text.splitlines()
    header = next(ln for ln in lines if "backbone" in ln)
    cols = [c.strip() for c in header.strip("|").split("|")]
    # datasets sorted, then K numerically (10 after 5)
    assert cols == ["backbone", "protocol", "fusar K=5", "mstar K=2", "mstar K=5", "mstar K=10"]
    assert "73.33 ± 3.12 (3)" in text and "80.00 ± 0.00 (1)" in text
    body = [ln for ln in lines if ln.startswith("| sarjepa")]
    assert len(body) == 2  # one line per (backbone, protocol)
    assert "population std (ddof 0)" in lines[-1]


def test_table_marks_conflicts_weights_and_failures():
    recs = [
        fake_record(acc=70.0, config={"A": 1}),
        fake_record(acc=60.0, config={"A": 2}),
        fake_record(sha="c" * 64, acc=55.0),
        fake_record(seed=2, status="failed", config={"A": 1}),
    ]
    text = table_text(aggregate_records(recs))
    assert "{cfg " in text and "never averaged" in text
    assert f"sarjepa@{'c' * 12} " in text and f"sarjepa@{'a' * 12} " in text
    assert "70.00 ± 0.00 (1, 1 failed)" in text


def test_csv_recomputes_exactly_from_records(tmp_path):
    for rec in _grid():
        write_record(tmp_path / "run", rec)
    rows = aggregate_records(iter_records([tmp_path / "run"]))
    out = write_csv(rows, tmp_path / "board.csv")
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0].keys()) == CSV_COLUMNS and len(table) == 24
    # Re-aggregate from the files and compare bit for bit; also check against numpy.
    again = aggregate_records(iter_records([tmp_path / "run"]))
    records = list(iter_records([tmp_path / "run"]))
    for line, row in zip(table, again):
        for col in ("acc_mean", "acc_std", "acc_std_sample", "acc_ci95", "macro_f1_mean"):
            assert float(line[col]) == getattr(row, col)
        accs = [
            r["metrics"]["accuracy"]
            for r in records
            if (r["key"]["backbone"], r["key"]["dataset"], r["key"]["protocol"], r["key"]["shots"])
            == (line["backbone"], line["dataset"], line["protocol"], int(line["shots"]))
        ]
        assert len(accs) == int(line["n_seeds"]) == 3
        assert abs(float(line["acc_mean"]) - np.mean(accs)) < 1e-12
        assert abs(float(line["acc_std"]) - np.std(accs)) < 1e-12
        assert line["config_conflict"] == "false" and line["toolkit_version"] == "0.1.0"


def test_csv_is_deterministic(tmp_path):
    recs = _grid()
    write_csv(aggregate_records(recs), tmp_path / "a.csv")
    random.Random(1).shuffle(recs)
    write_csv(aggregate_records(recs), tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_markdown_and_latex(tmp_path):
    rows = aggregate_records(_grid())
    md = write_markdown(rows, tmp_path / "board.md").read_text()
    assert md.splitlines()[0].startswith("| backbone") and "|---" in md.replace(" ", "")[:400]
    assert "± " in md and "- ± = population std" in md
    tex = write_latex(rows, tmp_path / "board.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\end{tabular}" in tex
    assert "±" not in tex and "$\\pm$" in tex
    assert "mstar\\_soc K=1" in tex and "mstar_soc" not in tex
    assert latex_escape("a_b & 5% #1 {x}") == "a\\_b \\& 5\\% \\#1 \\{x\\}"
