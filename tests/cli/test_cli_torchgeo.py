"""``eval`` with a torchgeo member: the median calibration is a recorded input option whose
cells never merge with the fixed mapping's (skipped without torchgeo)."""

from __future__ import annotations

import json

import pytest
import torch

from sarfewshot.cli.main import main
from sarfewshot.datasets.synthetic import generate_synthetic
from sarfewshot.engine.grid.config import FINGERPRINT_EXCLUDE_EXTRA
from sarfewshot.results.records import record_files
from sarfewshot.utils.confighash import CELL_CONFIG_FIELDS, config_fingerprint

tgm = pytest.importorskip("torchgeo.models")
NAME = "torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("tg")
    torch.manual_seed(0)
    weights = base / "s1.pth"
    torch.save(tgm.resnet50(in_chans=2, num_classes=0).state_dict(), weights)
    root = generate_synthetic(
        base / "data", n_train_per_class=3, n_test_per_class=2, size=32, progress_bar=False
    )
    return root, weights


def _eval(setup, out, *opts) -> int:
    root, weights = setup
    args = ["eval", "--backbone", NAME, "--weights", str(weights), "--img-size", "32"]
    args += ["--dataset", "synthetic", "--root", str(root), "--shots", "1", "--protocol", "knn"]
    return main([*args, "--seeds", "1", "--output", str(out), *opts, "INPUT.SAR.CROP", "0"])


def _record(out) -> dict:
    (path,) = record_files(out)
    return json.loads(path.read_text())


def test_calibrated_cells_are_recorded_and_never_merge_with_fixed_ones(setup, tmp_path, capsys):
    assert _eval(setup, tmp_path / "fixed") == 0
    fixed = _record(tmp_path / "fixed")
    assert fixed["backbone"]["input"]["calibration"] == "none"
    # the default leaves the config hash of records made before the key existed unchanged
    config = json.loads(json.dumps(fixed["config"]))
    config["MODEL"]["BACKBONE"].pop("INPUT_CALIBRATION")
    assert (
        config_fingerprint(config, CELL_CONFIG_FIELDS + FINGERPRINT_EXCLUDE_EXTRA)
        == (fixed["config_sha256"])
    )
    calibration = ("MODEL.BACKBONE.INPUT_CALIBRATION", "median")
    capsys.readouterr()
    assert _eval(setup, tmp_path / "fixed", *calibration) == 2  # same folder: a conflict
    assert "different config" in capsys.readouterr().err
    assert _eval(setup, tmp_path / "median", *calibration) == 0
    median = _record(tmp_path / "median")
    assert median["backbone"]["input"]["calibration"] == "median"
    assert median["config"]["MODEL"]["BACKBONE"]["INPUT_CALIBRATION"] == "median"
    assert median["config_sha256"] != fixed["config_sha256"]


def test_an_unknown_calibration_is_one_line_and_exit_2(setup, tmp_path, capsys):
    assert _eval(setup, tmp_path / "x", "MODEL.BACKBONE.INPUT_CALIBRATION", "mean") == 2
    err = capsys.readouterr().err.strip()
    assert "MODEL.BACKBONE.INPUT_CALIBRATION must be one of" in err and "\n" not in err
