"""Grid-level data checks: K above a class's pool, and an output folder inside the data root."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from sarfewshot.engine.grid import BackboneRequest, GridRequest, run_grid
from sarfewshot.errors import ConfigError, SplitError
from sarfewshot.results.records import record_files
from tests import fakes

ARCH = "irpe_vit_micro_patch8"
FAST = ["INPUT.SAR.CROP", "0", "DATALOADER.TEST.BATCH_SIZE", "64"]


def _tree(root: Path) -> Path:
    """A flat folder tree whose class ``cat_c`` keeps 2 train images (70 % of 3)."""
    for i, (name, n) in enumerate((("cat_a", 10), ("cat_b", 10), ("cat_c", 3))):
        fakes.add_class_folder(root, name, n=n, ext=".png", seed=i)
    return root


def _req(root: Path, out: Path, opts=(), shots=(1, 5)) -> GridRequest:
    return GridRequest(
        backbones=[BackboneRequest("random", None, ARCH)],
        datasets=["folder"],
        shots=list(shots),
        protocols=["knn"],
        seeds=[1],
        output=out,
        root=str(root),
        img_size=32,
        opts=[*FAST, *opts],
        progress=False,
    )


def test_k_above_a_class_pool_is_refused_before_any_cell(tmp_path):
    root, out = _tree(tmp_path / "data"), tmp_path / "runs"
    with pytest.raises(SplitError, match=r"folder-data: K=5 .*'cat_c' has 2 .*ALLOW_SHORT_CLASSES"):
        run_grid(_req(root, out), printer=lambda _: None)
    assert record_files(out) == []  # nothing ran, not even the K=1 cell


def test_short_classes_opt_in_records_real_counts_and_marks_the_table(tmp_path):
    root, out = _tree(tmp_path / "data"), tmp_path / "runs"
    req = _req(root, out, opts=("DATASET.ALLOW_SHORT_CLASSES", "True"))
    with pytest.warns(UserWarning, match="'cat_c' has only 2 images"):
        summary = run_grid(req, printer=lambda _: None)
    assert summary.ran == 2 and summary.failed == 0
    counts = {
        rec["shots"]: rec["split"]["support_counts"]
        for rec in (json.loads(p.read_text()) for p in record_files(out))
    }
    assert counts == {
        1: {"cat_a": 1, "cat_b": 1, "cat_c": 1},
        5: {"cat_a": 5, "cat_b": 5, "cat_c": 2},
    }
    header, line = summary.table.splitlines()[1], summary.table.splitlines()[3]
    k1, k5 = header.index("K=1"), header.index("K=5")
    assert "†" in line[k5:] and "†" not in line[k1:k5]
    assert "†: fewer than K support images in some class" in summary.table
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert {r["shots"]: r["short_support"] for r in rows} == {"1": "false", "5": "true"}


def test_output_inside_the_data_root_is_refused(tmp_path):
    root = _tree(tmp_path / "data")
    with pytest.raises(ConfigError, match=r"--output .*runs lies inside the dataset root --root"):
        run_grid(_req(root, root / "runs", shots=(1,)), printer=lambda _: None)
    (tmp_path / "link").symlink_to(root, target_is_directory=True)
    with pytest.raises(ConfigError, match=str(root.resolve())):
        run_grid(_req(root, tmp_path / "link" / "runs", shots=(1,)), printer=lambda _: None)
    with pytest.raises(ConfigError, match="lies inside"):
        run_grid(_req(tmp_path / "link", root / "runs", shots=(1,)), printer=lambda _: None)
    assert not (root / "runs").exists()  # refused before anything was written there
