"""Dassl/CoOp ``log.txt`` result blocks read as records."""

from __future__ import annotations

from pathlib import Path

import pytest

from sarfewshot.results.aggregate import aggregate_records
from sarfewshot.results.dassl_logs import (
    DasslLogWarning,
    find_dassl_logs,
    parse_dassl_log,
    records_from_dassl_runs,
)
from sarfewshot.results.records import validate_record
from tests.results.recordkit import dassl_log


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_parse_block_after_finish_training(tmp_path):
    parsed = parse_dassl_log(_write(tmp_path / "log.txt", dassl_log(acc=73.3)))
    assert parsed["total"] == 2425 and parsed["correct"] == 1778
    assert (parsed["accuracy"], parsed["error"], parsed["macro_f1"]) == (73.3, 26.7, 72.9)
    assert parsed["per_class_accuracy"] == {"2S1": 73.0, "BMP2": 76.9}
    cfg = parsed["config"]
    assert cfg["DATASET.NAME"] == "MSTAR_SOC" and cfg["DATASET.NUM_SHOTS"] == 10
    assert cfg["DATALOADER.TRAIN_X.BATCH_SIZE"] == 50 and cfg["OPTIM.LR"] == 0.001
    assert cfg["MODEL.BACKBONE.NAME"] == "sarjepa" and cfg["MODEL.INIT_WEIGHTS"] == ""
    assert cfg["TRAINER.NAME"] == "MIM_linear" and cfg["SEED"] == 1
    assert parsed["args"]["trainer"] == "MIM_linear" and parsed["eval_only"] is False


def test_unfinished_and_eval_only_logs(tmp_path):
    assert parse_dassl_log(_write(tmp_path / "a.txt", dassl_log(finished=False))) is None
    # An interrupted training log still holds a val block: it must not be read as a result.
    assert "=> result" in (tmp_path / "a.txt").read_text()
    parsed = parse_dassl_log(_write(tmp_path / "b.txt", dassl_log(acc=61.2, eval_only=True)))
    assert parsed["accuracy"] == 61.2 and parsed["eval_only"] is True


def test_coop_layout_without_config_dump(tmp_path):
    for seed, acc in ((1, 70.0), (2, 72.5), (3, 77.5)):
        run = tmp_path / "output" / "mstar_soc" / "MIM_linear" / "vit_b16_ep40_10shots"
        _write(run / f"seed{seed}" / "log.txt", dassl_log(seed=seed, acc=acc, config=False))
    _write(
        tmp_path
        / "output"
        / "mstar_soc"
        / "MIM_linear"
        / "vit_b16_ep40_10shots"
        / "seed4"
        / "log.txt",
        dassl_log(seed=4, finished=False, config=False),
    )
    with pytest.warns(DasslLogWarning, match="unfinished"):  # seed 4 is named, not dropped silently
        records = records_from_dassl_runs([tmp_path / "output"])
    assert len(records) == 3
    for rec in records:
        validate_record(rec)
        assert rec["source"] == "dassl_log" and rec["status"] == "ok"
        assert rec["key"]["backbone"] == "dassl" and rec["key"]["weights_sha256"] is None
        # release names map to the registry's, so Dassl rows merge with grid rows
        assert (rec["key"]["dataset"], rec["key"]["protocol"]) == ("mstar_soc", "linear")
        assert rec["key"]["shots"] == 10 and rec["config"] == {"CFG_NAME": "vit_b16_ep40"}
    (row,) = aggregate_records(records)  # CoOp's parse_test_res numbers
    assert row.seeds == (1, 2, 3) and row.source == "dassl_log"
    assert f"{row.acc_mean:.2f} ± {row.acc_std:.2f}" == "73.33 ± 3.12"
    assert f"{row.acc_ci95_normal:.2f}" == "3.53"


def test_config_dump_wins_over_folder_names(tmp_path):
    _write(tmp_path / "somewhere" / "run_a" / "log.txt", dassl_log(seed=0, acc=55.5))
    (rec,) = records_from_dassl_runs(tmp_path)
    key = rec["key"]
    assert (key["backbone"], key["dataset"], key["protocol"]) == (
        "sarjepa",
        "mstar_soc",
        "linear",
    )
    assert (key["shots"], key["seed"]) == (10, 0)
    assert rec["metrics"]["accuracy"] == 55.5 and rec["dataset"]["num_test"] == 2425
    assert "SEED" in rec["config"] and rec["log"]["path"].endswith("log.txt")


def test_base2new_layout_and_renamed_logs(tmp_path):
    run = tmp_path / "base2new" / "train_base" / "sar_acd" / "shots_16" / "CoOp" / "rn50" / "seed2"
    _write(run / "log.txt", dassl_log(seed=2, acc=40.0, config=False))
    # Dassl renames the log of a reused folder with a time stamp: the newest one counts.
    text = dassl_log(seed=2, acc=45.0, config=False).replace("MIM_linear", "CoOp")
    new = _write(run / "log.txt-2025-03-01-10-00-00", text)
    _write(run / "log.txt-2025-04-01-10-00-00", dassl_log(seed=2, finished=False))
    assert find_dassl_logs([tmp_path]) == [new]
    (rec,) = records_from_dassl_runs([tmp_path])
    assert (rec["key"]["dataset"], rec["key"]["protocol"]) == ("sar_acd", "CoOp")
    assert (rec["key"]["shots"], rec["key"]["seed"]) == (16, 2)
    assert rec["metrics"]["accuracy"] == 45.0 and rec["config"] == {"CFG_NAME": "rn50"}


def test_unknown_cell_is_skipped_with_a_warning(tmp_path):
    text = dassl_log(config=False).replace("trainer: MIM_linear", "trainer: ")
    _write(tmp_path / "flat" / "log.txt", text)
    with pytest.warns(DasslLogWarning, match="log.txt"):
        assert records_from_dassl_runs([tmp_path]) == []
