"""``TEST.SPLIT val`` (``eval --eval-split val``): scoring on the validation pool, not TEST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sarfewshot.engine.grid import run_grid
from sarfewshot.engine.grid.data import eval_items
from sarfewshot.errors import ConfigError
from sarfewshot.results.records import iter_records

from .test_grid_run import FAST, _req, root  # noqa: F401  (the module's synthetic tree)

VAL = [*FAST, "TEST.SPLIT", "val"]


def _records(out: Path) -> dict[tuple, dict]:
    return {(r["key"]["dataset"], r["protocol"], r["seed"]): r for r in iter_records(out)}


def _split_file(record: dict, out: Path) -> dict:
    return json.loads((out / record["split"]["path"]).read_text())


def test_val_cells_score_the_pool_and_never_merge_with_test_cells(root, tmp_path):  # noqa: F811
    out = tmp_path / "runs"
    kw = dict(protocols=["knn", "finetune"], shots=[1], seeds=[1, 2])
    run_grid(_req(root, out, **kw), printer=lambda *_: None)
    run_grid(_req(root, out, opts=VAL, **kw), printer=lambda *_: None)  # same folder: no clash
    records = _records(out)
    assert {d for d, _, _ in records} == {"synthetic", "synthetic:val"}
    for (dataset, protocol, seed), rec in records.items():
        split = _split_file(rec, out)
        scored = split["val"] if dataset.endswith(":val") else split["test"]
        assert rec["dataset"]["eval_split"] == ("val" if dataset.endswith(":val") else "test")
        assert rec["dataset"]["num_test"] == len(scored)
        assert rec["metrics"]["total"] == len(scored)  # what the protocol really scored
        # the same split file, so the same support set, under both keys
        twin = records[(dataset.split(":")[0], protocol, seed)]
        assert twin["split"]["sha256"] == rec["split"]["sha256"]
    support = {e[0] for e in split["train"]}
    assert support.isdisjoint(e[0] for e in split["val"])
    assert split["val"] and len(split["val"]) != len(split["test"])


def test_val_scoring_leaves_the_cell_no_validation_pool():
    class Split:
        train = ["a"]
        val = ["b", "c"]
        test = ["d"]

    assert eval_items(Split, "test", "x") == (["b", "c"], ["d"], "test")
    # the pool becomes the scored set, and nothing selects on it (logreg's C, best_val)
    assert eval_items(Split, "val", "x") == ([], ["b", "c"], "train")
    with pytest.raises(ConfigError, match="TEST.SPLIT"):
        eval_items(Split, "train", "x")


def test_val_scoring_without_a_pool_is_refused_before_any_cell(root, tmp_path):  # noqa: F811
    req = _req(root, tmp_path / "runs", opts=[*VAL, "DATASET.VAL_POOL", "0"])
    with pytest.raises(ConfigError, match="DATASET.VAL_POOL is 0"):
        run_grid(req, printer=lambda *_: None)
    assert not list(iter_records(tmp_path / "runs"))


def test_unknown_test_split_is_a_config_error(root, tmp_path):  # noqa: F811
    req = _req(root, tmp_path / "runs", opts=[*FAST, "TEST.SPLIT", "train"])
    with pytest.raises(ConfigError, match="TEST.SPLIT must be test or val"):
        run_grid(req, printer=lambda *_: None)


def test_cli_flag_runs_the_val_cells(root, tmp_path):  # noqa: F811
    from sarfewshot.cli.main import main

    out = tmp_path / "cli"
    args = ["eval", "--backbone", "random", "--arch", "irpe_vit_micro_patch8", "--img-size", "32"]
    args += ["--dataset", "synthetic", "--root", str(root), "--shots", "1", "--seeds", "1"]
    args += ["--protocol", "knn", "--output", str(out), "--eval-split", "val", *FAST]
    assert main(args) == 0
    (rec,) = iter_records(out)
    assert rec["key"]["dataset"] == "synthetic:val"
    assert rec["config"]["TEST"]["SPLIT"] == "val"


def test_blocks_rule_scores_one_pool_for_every_seed(root, tmp_path):  # noqa: F811
    out = tmp_path / "runs"
    opts = [*VAL, "DATASET.VAL_POOL_RULE", "blocks"]
    run_grid(_req(root, out, opts=opts, protocols=["knn"], shots=[1], seeds=[1, 2]), printer=print)
    records = _records(out)
    splits = [_split_file(rec, out) for rec in records.values()]
    assert len(splits) == 2 and all(s["val_rule"] == "blocks" for s in splits)
    assert splits[0]["val"] == splits[1]["val"] and splits[0]["train"] != splits[1]["train"]
    assert all(r["metrics"]["total"] == len(splits[0]["val"]) for r in records.values())
