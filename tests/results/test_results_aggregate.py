"""Aggregation: de-duplication across run folders, config conflicts, failed cells."""

from __future__ import annotations

import warnings

import pytest

from sarfewshot.results.aggregate import DuplicateRecordWarning, aggregate_records, deduplicate
from sarfewshot.results.records import iter_records, write_record
from tests.results.recordkit import SHA_B, fake_record

ACCS = {1: 70.0, 2: 72.5, 3: 77.5}


def _seeds(**kw):
    return [fake_record(seed=s, acc=a, **kw) for s, a in ACCS.items()]


def test_one_group_numbers():
    (row,) = aggregate_records(_seeds())
    assert (row.backbone, row.dataset, row.protocol, row.shots) == ("sarjepa", "mstar", "linear", 5)
    assert row.n_seeds == 3 and row.seeds == (1, 2, 3)
    assert round(row.acc_mean, 2) == 73.33 and round(row.acc_std, 2) == 3.12
    assert round(row.acc_ci95_normal, 2) == 3.53
    assert row.acc_ci95 == pytest.approx(4.302652729749464 * row.acc_std_sample / 3**0.5)
    assert row.macro_f1_mean == pytest.approx(72.3333333333)
    assert (row.n_failed, row.n_duplicates, row.config_conflict) == (0, 0, False)
    assert row.toolkit_version == "0.1.0" and row.source == "sarfewshot"


def test_dedup_across_two_run_folders(tmp_path):
    for rec in _seeds(created="2025-01-01T00:00:00+00:00", host="a"):
        write_record(tmp_path / "machine_a", rec)
    for rec in _seeds(created="2025-02-01T00:00:00Z", host="b"):
        write_record(tmp_path / "machine_b", rec)
    write_record(tmp_path / "machine_b", fake_record(seed=4, acc=80.0))
    records = list(iter_records([tmp_path / "machine_a", tmp_path / "machine_b"]))
    assert len(records) == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # identical duplicates do not warn
        (row,) = aggregate_records(records)
    assert row.n_seeds == 4 and row.n_duplicates == 3 and row.seeds == (1, 2, 3, 4)
    kept, dropped = deduplicate(records)
    assert {r["host"] for r in kept if r["seed"] < 4} == {"b"}  # the newest copy
    assert sum(dropped.values()) == 3


def test_disagreeing_duplicates_warn_and_keep_newest():
    old = fake_record(acc=70.0, created="2025-01-01T00:00:00+00:00")
    new = fake_record(acc=71.0, created="2025-03-01T00:00:00+00:00")
    with pytest.warns(DuplicateRecordWarning, match="disagree"):
        (row,) = aggregate_records([new, old])
    assert row.acc_mean == 71.0 and row.n_seeds == 1 and row.n_duplicates == 1


def test_ok_beats_failed_copy_of_the_same_cell():
    failed = fake_record(status="failed", created="2025-05-01T00:00:00+00:00")
    ok = fake_record(acc=64.0, created="2025-01-01T00:00:00+00:00")
    (row,) = aggregate_records([failed, ok])
    assert (row.n_seeds, row.acc_mean, row.n_failed) == (1, 64.0, 0)


def test_config_conflict_rows_are_not_averaged():
    cfg_a = {"OPTIM": {"LR": 0.001}}
    cfg_b = {"OPTIM": {"LR": 0.01}}
    recs = _seeds(config=cfg_a) + [fake_record(seed=s, acc=50.0, config=cfg_b) for s in (1, 2)]
    rows = aggregate_records(recs)
    assert len(rows) == 2 and all(r.config_conflict for r in rows)
    by_n = {r.n_seeds: r for r in rows}
    assert by_n[2].acc_mean == 50.0 and round(by_n[3].acc_mean, 2) == 73.33
    assert by_n[2].config_sha256 != by_n[3].config_sha256
    # another shots value with one config only is not a conflict
    other = aggregate_records(recs + [fake_record(shots=10, config=cfg_a)])
    assert [r.config_conflict for r in other if r.shots == 10] == [False]


def test_failed_cells_counted_not_averaged():
    recs = _seeds() + [fake_record(seed=9, status="failed")]
    (row,) = aggregate_records(recs)
    assert row.n_seeds == 3 and row.n_failed == 1 and round(row.acc_mean, 2) == 73.33
    (only_failed,) = aggregate_records([fake_record(status="failed")])
    assert only_failed.n_seeds == 0 and only_failed.acc_mean is None
    assert only_failed.n_failed == 1


def test_groups_split_by_weights_protocol_dataset_shots():
    recs = (
        _seeds()
        + _seeds(sha=SHA_B)
        + _seeds(protocol="knn")
        + _seeds(dataset="fusar")
        + _seeds(shots=10)
        + _seeds(backbone="random", sha=None)
    )
    rows = aggregate_records(recs)
    assert len(rows) == 6 and all(r.n_seeds == 3 for r in rows)
    assert [r.backbone for r in rows] == ["random"] + ["sarjepa"] * 5
    assert rows == aggregate_records(list(reversed(recs)))  # order-independent


def _versioned(seed: int, version: str | None, **kw) -> dict:
    record = fake_record(seed=seed, **kw)
    if version is not None:
        record["dataset"]["fingerprint"] = {
            "version": 1,
            "sha256": version * 64,
            "method": "content",
        }
    return record


def test_dataset_versions_are_never_averaged_together():
    import warnings

    from sarfewshot.results.aggregate import VersionConflictWarning

    records = [_versioned(1, "a", acc=60.0), _versioned(2, "a", acc=62.0)]
    records.append(_versioned(3, "b", acc=90.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = aggregate_records(records)
    assert sorted(r.n_seeds for r in rows) == [1, 2]
    assert all(r.data_conflict for r in rows)
    assert {r.data_version[:1] for r in rows} == {"a", "b"}
    assert any(issubclass(w.category, VersionConflictWarning) for w in caught)
    same = aggregate_records([_versioned(1, "a"), _versioned(2, "a")])
    assert len(same) == 1 and not same[0].data_conflict


def test_diverged_cells_are_counted_not_averaged_unless_asked():
    records = [fake_record(seed=1, acc=80.0), fake_record(seed=2, acc=82.0)]
    diverged = fake_record(seed=3, acc=8.75)
    diverged.update(status="diverged", error="the training loss ended at 2.8e+31")
    records.append(diverged)
    (row,) = aggregate_records(records)
    assert (row.n_seeds, row.n_diverged, row.seeds) == (2, 1, (1, 2))
    (row,) = aggregate_records(records, include_diverged=True)
    assert row.n_seeds == 3 and abs(row.acc_mean - (80.0 + 82.0 + 8.75) / 3) < 1e-12
