"""``eval --conditions``: one training per cell, one record per named test set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sarfewshot.engine.grid import BackboneRequest, GridRequest, run_grid
from sarfewshot.engine.trainer import TrainerX
from sarfewshot.errors import ConfigError
from sarfewshot.results.records import KEY_FIELDS, cell_id, condition_of, iter_records, record_files
from sarfewshot.results.robustness import robustness_rows
from sarfewshot.trainers.logreg import LogReg
from tests import fakes

ARCH = "irpe_vit_micro_patch8"
FAST = ["INPUT.SAR.CROP", "0", "OPTIM.MAX_EPOCH", "1", "DATALOADER.TEST.BATCH_SIZE", "64"]

# logreg on a tiny fake tree (40 classes, a few chips each): scikit-learn's "more classes than
# half the samples" note is about the data's size, not about what these tests check
pytestmark = pytest.mark.filterwarnings("ignore:The number of unique classes:UserWarning")

DEPRESSION = ("id", "depression", "depression_30", "depression_45", "depression_60")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("atrnet")
    fakes.make_atrnet_star_tree(
        out, folders=("EOC_depression", "SOC_40classes"), n_train=5, n_test=1
    )
    return out


def _req(root: Path, out: Path, setting: str = "eoc_depression", **kw) -> GridRequest:
    base = dict(
        backbones=[BackboneRequest("random", None, ARCH)],
        datasets=["atrnet_star"],
        shots=[1],
        protocols=["knn", "logreg", "linear", "finetune"],
        seeds=[1, 2],
        output=out,
        root=str(root),
        img_size=32,
        opts=[*FAST, "DATASET.SAR.ATRNET_SETTING", setting],
        progress=False,
        serial=True,
    )
    base.update(kw)
    return GridRequest(**base)


@pytest.fixture
def fits(monkeypatch) -> list[str]:
    """Every training (TrainerX.train) and every feature-classifier fit (LogReg.fit)."""
    calls: list[str] = []
    train, fit = TrainerX.train, LogReg.fit.__func__

    def counted_train(self, *a, **k):
        calls.append(f"train {self.name}")
        return train(self, *a, **k)

    def counted_fit(cls, *a, **k):
        calls.append("fit logreg")
        return fit(cls, *a, **k)

    monkeypatch.setattr(TrainerX, "train", counted_train)
    monkeypatch.setattr(LogReg, "fit", classmethod(counted_fit))
    return calls


def test_three_conditions_train_as_often_as_one(root, tmp_path, fits):
    one = run_grid(_req(root, tmp_path / "one", conditions=["depression"]), printer=lambda s: 0)
    trained_once = list(fits)
    fits.clear()
    three = run_grid(
        _req(root, tmp_path / "three", conditions=["id", "depression_30", "depression"]),
        printer=lambda s: 0,
    )
    assert sorted(fits) == sorted(trained_once)  # same trainings, not one per condition
    assert len(trained_once) == 2 * 3  # (linear, finetune, logreg) x 2 seeds
    assert (one.ran, three.ran) == (8, 24)  # records: one per condition


def test_all_conditions_write_one_record_each_with_the_same_split(root, tmp_path):
    out = tmp_path / "runs"
    summary = run_grid(_req(root, out, conditions=["all"], protocols=["knn", "linear"]))
    assert summary.failed == 0
    records = list(iter_records([out]))
    assert len(records) == 2 * 2 * len(DEPRESSION)
    by_cell: dict[tuple, dict[str, dict]] = {}
    for r in records:
        key = r["key"]
        assert key["setting"] == "atrnet_star_eoc_depression"
        assert key["dataset"] == f"atrnet_star_eoc_depression:{key['condition']}"
        by_cell.setdefault((key["protocol"], key["seed"]), {})[key["condition"]] = r
    for conds in by_cell.values():
        assert tuple(conds) == DEPRESSION or set(conds) == set(DEPRESSION)
        assert len({r["split"]["sha256"] for r in conds.values()}) == 1
        assert len({r["split"]["path"] for r in conds.values()}) == 1
        assert len({r["config_sha256"] for r in conds.values()}) == 1
        n_types = len(fakes.ATRNET_FAKE_CLASSES)
        assert conds["depression_45"]["dataset"]["num_test"] == n_types
        assert conds["depression"]["dataset"]["num_test"] == 3 * n_types  # test = union
        assert conds["id"]["dataset"]["num_test"] == n_types  # one held-out chip per type
        assert conds["id"]["dataset"]["eval_split"] == "val"
        assert "condition_fingerprint" in conds["depression_30"]["dataset"]
    # a rerun finds every condition done
    lines: list[str] = []
    again = run_grid(_req(root, out, conditions=["all"], protocols=["knn", "linear"]), lines.append)
    assert again.ran == 0 and "4 cells already done, 0 to run" in lines


def test_plain_records_keep_their_keys_and_match_the_test_condition(root, tmp_path):
    plain_out, cond_out = tmp_path / "plain", tmp_path / "cond"
    run_grid(_req(root, plain_out, protocols=["knn", "linear"]), printer=lambda s: 0)
    run_grid(
        _req(root, cond_out, protocols=["knn", "linear"], conditions=["depression"]),
        printer=lambda s: 0,
    )
    plain = {(r["protocol"], r["seed"]): r for r in iter_records([plain_out])}
    cond = {(r["protocol"], r["seed"]): r for r in iter_records([cond_out])}
    for cell, record in plain.items():
        assert set(record["key"]) == set(KEY_FIELDS)  # no setting/condition: old layout
        assert record["key"]["dataset"] == "atrnet_star"
        path = plain_out / "records" / f"{cell_id(record['key'])}.json"
        assert json.loads(path.read_text())["key"] == record["key"]
        other = cond[cell]
        assert other["config_sha256"] == record["config_sha256"]
        assert other["split"]["sha256"] == record["split"]["sha256"]
        # the whole test folder, scored after the same training: the same numbers
        assert other["metrics"]["accuracy"] == record["metrics"]["accuracy"]
        # ... and the tables call it what it is: the depression condition, not `id`
        assert record["dataset"]["test_condition"] == "depression"
        assert condition_of(record) == condition_of(other) == "depression"
    assert len(record_files(plain_out)) == len(record_files(cond_out)) == 4
    rows = robustness_rows(iter_records([plain_out]))
    assert {r.condition for r in rows} == {"depression"} and all(r.drop is None for r in rows)


def test_in_distribution_plain_records_name_no_test_condition(root, tmp_path):
    """A setting whose test set is in distribution leaves plain records as they were."""
    run_grid(_req(root, tmp_path / "soc", "soc40", protocols=["knn"], seeds=[1]), printer=print)
    (record,) = iter_records([tmp_path / "soc"])
    assert "test_condition" not in record["dataset"] and condition_of(record) == "id"


def test_every_setting_shares_one_folder(root, tmp_path):
    out = tmp_path / "runs"
    for setting in ("soc40", "eoc_depression"):
        run_grid(
            _req(root, out, setting, protocols=["knn"], seeds=[1], conditions=["all"]),
            printer=lambda s: 0,
        )
    names = sorted(r["key"]["dataset"] for r in iter_records([out]))
    assert names == sorted(
        ["atrnet_star_soc40:id"] + [f"atrnet_star_eoc_depression:{c}" for c in DEPRESSION]
    )


def test_unknown_condition_and_val_split_are_clear_errors(root, tmp_path):
    with pytest.raises(ConfigError, match="names the test conditions id, depression"):
        run_grid(_req(root, tmp_path / "a", conditions=["scene"]), printer=lambda s: 0)
    req = _req(root, tmp_path / "b", conditions=["all"])
    req.opts += ["TEST.SPLIT", "val"]
    with pytest.raises(ConfigError, match="drop --eval-split val"):
        run_grid(req, printer=lambda s: 0)


def test_cli_conditions_all_then_the_robustness_table(root, tmp_path, capsys):
    from sarfewshot.cli.main import main

    out = tmp_path / "runs"
    args = ["eval", "--backbone", "random", "--arch", ARCH, "--dataset", "atrnet_star"]
    args += ["--root", str(root), "--shots", "1", "--protocol", "knn", "--seeds", "1,2"]
    args += ["--img-size", "32", "--output", str(out), "--conditions", "all", "--device", "cpu"]
    assert main([*args, *FAST, "DATASET.SAR.ATRNET_SETTING", "eoc_depression"]) == 0
    printed = capsys.readouterr().out
    assert "drop = acc(id) - acc(condition)" in printed
    assert (out / "robustness.csv").is_file()
    table = tmp_path / "robust.csv"
    assert main(["leaderboard", str(out), "--robustness-csv", str(table)]) == 0
    printed = capsys.readouterr().out
    assert "robustness (accuracy per test condition, drop from id)" in printed
    lines = table.read_text().splitlines()
    assert lines[0].startswith("backbone,setting,protocol,shots,condition,n_seeds,acc_mean")
    conditions = [line.split(",")[4] for line in lines[1:]]
    assert conditions == ["id", "depression", "depression_30", "depression_45", "depression_60"]
    drops = [line.split(",")[8] for line in lines[1:]]
    assert drops[0] == "" and all(d != "" for d in drops[1:])  # two seeds paired each
    assert table.read_text() == (out / "robustness.csv").read_text()


def test_batched_seeds_score_every_condition_like_the_serial_path(root, tmp_path):
    kw = dict(protocols=["linear"], conditions=["depression", "depression_30"])
    run_grid(_req(root, tmp_path / "serial", **kw), printer=lambda s: 0)
    run_grid(_req(root, tmp_path / "batched", serial=False, **kw), printer=lambda s: 0)
    serial = {(r["key"]["dataset"], r["seed"]): r for r in iter_records([tmp_path / "serial"])}
    batched = {(r["key"]["dataset"], r["seed"]): r for r in iter_records([tmp_path / "batched"])}
    assert set(serial) == set(batched) and len(serial) == 4
    n_test = {k: r["dataset"]["num_test"] for k, r in serial.items()}
    for key, record in batched.items():
        assert record["execution"] == {"executor": "batched", "group_size": 2}
        # same numbers up to floating-point reduction order: within one test image
        gap = abs(record["metrics"]["accuracy"] - serial[key]["metrics"]["accuracy"])
        assert gap <= 100.0 / n_test[key] + 1e-9
        assert record["metrics"]["final_train_loss"] == pytest.approx(
            serial[key]["metrics"]["final_train_loss"], rel=1e-4
        )


def test_shots_all_is_the_whole_train_pool(root, tmp_path):
    from sarfewshot.cli.eval import parse_shots

    assert parse_shots("1,5,all") == [1, 5, -1] and parse_shots("all") == [-1]
    with pytest.raises(ConfigError, match="K must be a positive integer"):
        run_grid(_req(root, tmp_path / "zero", shots=[0]), printer=lambda s: 0)
    out = tmp_path / "runs"
    run_grid(_req(root, out, shots=[-1], protocols=["knn"], seeds=[1]), printer=lambda s: 0)
    (record,) = iter_records([out])
    assert record["key"]["shots"] == -1 and record["split"]["path"].endswith("shot_all-seed_1.json")
    n_types, pool = len(fakes.ATRNET_FAKE_CLASSES), 5 - 1  # 5 train chips, one held out
    assert record["split"]["support_counts"] == {c: pool for c in fakes.ATRNET_FAKE_CLASSES}
    assert len(record["metrics"]["per_class_accuracy"]) == n_types


def test_sample_synth2real_scores_id_and_measured(tmp_path):
    fakes.make_sample_tree(tmp_path / "sample", per_elevation=2)
    req = _req(tmp_path / "sample", tmp_path / "runs", protocols=["knn"], seeds=[1])
    req.datasets, req.conditions = ["sample"], ["all"]
    req.opts = [*FAST, "DATASET.SAR.SAMPLE_MODE", "synth2real"]
    run_grid(req, printer=lambda s: 0)
    records = {r["key"]["condition"]: r for r in iter_records([tmp_path / "runs"])}
    assert set(records) == {"id", "measured"}
    assert records["measured"]["key"]["dataset"] == "sample_synth2real_decibel:measured"
    n_classes = len(fakes.SAMPLE_CLASSES)
    assert records["measured"]["dataset"]["num_test"] == 4 * 2 * n_classes  # every real chip
    assert records["id"]["dataset"]["eval_split"] == "val"
