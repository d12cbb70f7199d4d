"""lora and partial through the command line: the grid (also under --batched), the leaderboard
and compare take them like any protocol."""

from __future__ import annotations

import csv

from sarfewshot.cli.main import main
from sarfewshot.results.records import read_record, record_files
from tests.cli.conftest import TAIL

ARCHS = "irpe_vit_micro_patch8;vit:patch=8,dim=64,depth=2,heads=2"
A, B = "random@irpe_vit_micro_patch8", "random@vit:patch=8,dim=64,depth=2,heads=2"


def test_adaptation_protocols_run_through_grid_leaderboard_and_compare(root, tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["eval", "--backbone", "random,random", "--arch", ARCHS, "--img-size", "32"]
    args += ["--dataset", "synthetic", "--root", str(root), "--output", str(out), "--batched"]
    args += ["--shots", "2", "--seeds", "1-2", "--protocol", "lora,partial"]
    assert main([*args, *TAIL, "TRAINER.PARTIAL.BLOCKS", "1"]) == 0
    records = [read_record(p) for p in record_files(out)]
    assert len(records) == 8 and {r["protocol"] for r in records} == {"lora", "partial"}
    for rec in records:
        assert rec["status"] == "ok"
        assert 0 < rec["metrics"]["trainable_params"] < rec["metrics"]["total_params"]
        # no stacked form: each seed runs alone, also under --batched
        assert rec["execution"] == {"executor": "serial", "group_size": 1}
    capsys.readouterr()
    assert main(["leaderboard", str(out), "--csv", str(tmp_path / "board.csv")]) == 0
    with open(tmp_path / "board.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["backbone"], r["protocol"]) for r in rows) == sorted(
        (b, p) for b in (A, B) for p in ("lora", "partial")
    )
    capsys.readouterr()
    assert main(["compare", str(out), "--a", A, "--b", B, "--csv", str(tmp_path / "c.csv")]) == 0
    with open(tmp_path / "c.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert [(ln["protocol"], ln["n"]) for ln in lines[:2]] == [("lora", "2"), ("partial", "2")]


def test_too_many_partial_blocks_is_one_line_naming_the_key(root, tmp_path, capsys):
    args = ["eval", "--backbone", "random", "--arch", "irpe_vit_micro_patch8", "--img-size", "32"]
    args += ["--dataset", "synthetic", "--root", str(root), "--output", str(tmp_path / "runs")]
    assert main([*args, "--shots", "1", "--seeds", "1", "--protocol", "partial", *TAIL]) == 2
    err = capsys.readouterr().err
    assert "TRAINER.PARTIAL.BLOCKS 4: backbone random" in err and "has 2 blocks" in err
    assert not record_files(tmp_path / "runs")
