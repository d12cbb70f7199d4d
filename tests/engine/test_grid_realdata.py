"""A tiny CPU grid on the shared MSTAR chips (skipped when ../shared is absent)."""

from __future__ import annotations

import json

import pytest

from sarfewshot.engine.grid import BackboneRequest, GridRequest, run_grid
from sarfewshot.results.records import record_files

pytestmark = pytest.mark.realdata


def test_tiny_grid_on_mstar_runs_end_to_end(mstar_soc_root, tmp_path):
    req = GridRequest(
        backbones=[BackboneRequest("random", None, "irpe_vit_micro_patch8")],
        datasets=["mstar"],
        shots=[1],
        protocols=["knn", "prototype", "linear"],
        seeds=[1],
        output=tmp_path,
        root=str(mstar_soc_root),
        img_size=32,
        opts=["OPTIM.MAX_EPOCH", "3"],
        progress=False,
    )
    lines: list[str] = []
    summary = run_grid(req, printer=lines.append)
    assert (summary.ran, summary.failed) == (3, 0)
    records = [json.loads(p.read_text()) for p in record_files(tmp_path)]
    for rec in records:
        assert rec["dataset"]["name"] == "mstar_soc"
        assert rec["dataset"]["num_test"] == 2425  # scored on the whole TEST set
        assert rec["config"]["INPUT"]["SAR"]["CROP"] == 128  # the preset's crop stays
        assert rec["config"]["INPUT"]["SIZE"] == [32, 32]
        assert 0.0 <= rec["metrics"]["accuracy"] <= 100.0
        assert sum(map(sum, rec["metrics"]["confusion_matrix"])) == 2425
    split = json.loads((tmp_path / records[0]["split"]["path"]).read_text())
    assert len(split["train"]) == 10  # 1 shot x 10 classes
    assert "mstar_soc K=1" in summary.table
    again = run_grid(req, printer=lines.append)
    assert again.ran == 0  # a second identical command does no work
    assert "3 cells already done, 0 to run" in lines
