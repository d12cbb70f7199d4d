"""``sarfewshot demo --quick``: data, tiny SAR-JEPA pretraining, grid, table, next command."""

from __future__ import annotations

from sarfewshot.cli.main import main
from sarfewshot.results.records import read_record, record_files


def test_quick_demo_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "0 cells already done, 24 to run" in text
    assert "random@irpe_vit_micro_patch8" in text and "sarjepa" in text
    assert "sarfewshot eval --backbone sarjepa --weights" in text and "--dataset mstar" in text
    assert (out / "runs" / "leaderboard.csv").is_file()
    records = [read_record(p) for p in record_files(out / "runs")]
    assert {r["protocol"] for r in records} == {"linear", "knn", "prototype"}
    pretrained = [r for r in records if r["key"]["backbone"] == "sarjepa"]
    assert pretrained and all(r["key"]["weights_sha256"] for r in pretrained)
    assert pretrained[0]["backbone"]["weights"].endswith("checkpoint-last.pth")
    # everything is reused the second time
    assert main(["demo", "--quick", "--output", str(out)]) == 0
    assert "24 cells already done, 0 to run" in capsys.readouterr().out
