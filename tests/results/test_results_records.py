"""Record schema, atomic writes, validated loading and the run-folder helpers."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sarfewshot.results.records import (
    RecordError,
    cell_id,
    collect_versions,
    config_fingerprint,
    iter_records,
    read_record,
    record_exists,
    record_path,
    write_record,
)
from tests.results.recordkit import SHA_A, fake_record


def test_cell_id_and_path(tmp_path):
    rec = fake_record(shots=10, seed=0)
    assert cell_id(rec["key"]) == f"sarjepa__{SHA_A[:12]}__mstar__linear__k10__s0"
    no_weights = fake_record(backbone="random", sha=None)
    assert cell_id(no_weights["key"]) == "random__none__mstar__linear__k5__s1"
    odd = dict(rec["key"], backbone="ViT-B/16")
    assert "/" not in cell_id(odd) and cell_id(odd) != cell_id(dict(odd, backbone="ViT-B-16"))
    assert record_path(tmp_path, rec["key"]) == tmp_path / "records" / f"{cell_id(rec['key'])}.json"


def test_write_read_round_trip(tmp_path):
    rec = fake_record(seed=3, acc=81.5)
    rec["split"]["path"] = str(tmp_path / "splits" / "s.json")  # absolute, inside the run
    path = write_record(tmp_path, rec)
    back = read_record(path)
    assert back["split"]["path"] == "splits/s.json"
    assert back["metrics"] == rec["metrics"] and back["key"] == rec["key"]
    assert back["schema"] == 1 and back["created"] == rec["created"]
    assert list(iter_records([tmp_path])) == [back]


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda r: r.update(schema=2), "schema version 2"),
        (lambda r: r["metrics"].pop("accuracy"), "metrics.accuracy"),
        (lambda r: r["metrics"].update(accuracy=140.0), "metrics.accuracy"),
        (lambda r: r.update(shots=7), "'shots' differs"),
        (lambda r: r["key"].update(seed="1"), "key.seed"),
        (lambda r: r.update(status="done"), "'status'"),
        (lambda r: r.update(status="failed", error=None), "needs an 'error'"),
        (lambda r: r["metrics"].update(confusion_matrix=[[1, 2]]), "confusion_matrix"),
        (lambda r: r.update(created="yesterday"), "'created'"),
    ],
)
def test_invalid_records_name_the_file(tmp_path, mutate, words):
    rec = fake_record()
    mutate(rec)
    path = tmp_path / "records" / "bad.json"
    path.parent.mkdir()
    path.write_text(json.dumps(rec))
    with pytest.raises(RecordError, match=words) as info:
        read_record(path)
    assert str(path) in str(info.value)
    with pytest.raises(RecordError):
        write_record(tmp_path, rec)


def test_numpy_values_and_non_finite_numbers():
    rec = fake_record(cmat=np.array([[3, 1, 0], [0, 4, 0], [0, 0, 2]], dtype=np.int64))
    assert rec["metrics"]["confusion_matrix"] == [[3, 1, 0], [0, 4, 0], [0, 0, 2]]
    assert type(rec["metrics"]["confusion_matrix"][0][0]) is int
    with pytest.raises(RecordError, match="non-finite"):
        fake_record(acc=float("nan"))


def test_torn_file_and_leftover_temp_files(tmp_path):
    rec = fake_record()
    good = write_record(tmp_path, rec)
    text = good.read_text()
    # A crash between the temp write and the rename leaves a hidden .tmp file behind.
    (good.parent / f".{good.name}.k3j2.tmp").write_text(text[: len(text) // 2])
    assert [r["key"] for r in iter_records([tmp_path])] == [rec["key"]]
    assert record_exists(tmp_path, rec["key"])
    # A torn record (cannot come from write_record) is an error naming it, and not "done".
    other = fake_record(seed=2)
    torn = record_path(tmp_path, other["key"])
    torn.write_text(json.dumps(other)[:100])
    with pytest.raises(RecordError, match="not valid JSON") as info:
        read_record(torn)
    assert torn.name in str(info.value)
    assert not record_exists(tmp_path, other["key"])


def _writer(run_dir: str, worker: int, n: int) -> None:
    for i in range(n):
        write_record(run_dir, fake_record(acc=float(worker * 10 + i % 10), host=f"w{worker}"))


def test_concurrent_writers_never_tear(tmp_path):
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 40)) for w in range(3)]
    key = fake_record()["key"]
    for p in procs:
        p.start()
    reads = 0
    while any(p.is_alive() for p in procs):
        path = record_path(tmp_path, key)
        if path.exists():
            assert read_record(path)["key"] == key  # never half a file
            reads += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    final = read_record(record_path(tmp_path, key))
    assert final["host"] in {"w0", "w1", "w2"}
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == [f"{cell_id(key)}.json"]


def test_record_exists_rules(tmp_path):
    ok, failed = fake_record(seed=1), fake_record(seed=2, status="failed")
    write_record(tmp_path, ok)
    write_record(tmp_path, failed)
    assert record_exists(tmp_path, ok["key"])
    assert not record_exists(tmp_path, failed["key"])
    assert record_exists(tmp_path, failed["key"], include_failed=True)
    assert record_exists(tmp_path, ok["key"], config_sha256=ok["config_sha256"])
    assert not record_exists(tmp_path, ok["key"], config_sha256="0" * 64)
    assert not record_exists(tmp_path, fake_record(seed=9)["key"])


def test_iter_records_over_nested_folders(tmp_path):
    write_record(tmp_path / "m1", fake_record(seed=1))
    write_record(tmp_path / "m2" / "grid" / "part", fake_record(seed=2))
    (tmp_path / "m2" / "notes.json").write_text("{}")  # not in a records/ folder
    seeds = [r["seed"] for r in iter_records([tmp_path / "m1", tmp_path / "m2"])]
    assert seeds == [1, 2]
    assert [r["seed"] for r in iter_records(tmp_path)] == [1, 2]


def test_config_fingerprint():
    base = {
        "SEED": 1,
        "OUTPUT_DIR": "/a",
        "DATASET": {"ROOT": "/x", "NAME": "mstar"},
        "OPTIM": {"LR": 0.001, "BETAS": (0.9, 0.999)},
    }
    same = {
        "SEED": 7,
        "OUTPUT_DIR": "/b",
        "DATASET": {"ROOT": "/y", "NAME": "mstar"},
        "OPTIM": {"BETAS": [0.9, 0.999], "LR": 0.001},
    }
    assert config_fingerprint(base) == config_fingerprint(same)
    changed = json.loads(json.dumps(same))
    changed["OPTIM"]["LR"] = 0.01
    assert config_fingerprint(changed) != config_fingerprint(base)
    assert config_fingerprint(base, exclude=()) != config_fingerprint(same, exclude=())
    assert base["SEED"] == 1 and "ROOT" in base["DATASET"]  # the caller's dict is untouched


def test_config_fingerprint_value_is_pinned():
    """Records store this hash: a change to how it is computed would orphan every record."""
    config = {
        "SEED": 1,
        "OUTPUT_DIR": "/a",
        "DATASET": {"ROOT": "/x", "NAME": "mstar", "NUM_SHOTS": 5},
        "OPTIM": {"LR": 0.001, "BETAS": (0.9, 0.999)},
    }
    expected = "76bcd969d2f0c84d1638783f111e4ca7570cdb3c43fede4791c5b400e305d081"
    assert config_fingerprint(config) == expected


def test_versions_and_no_heavy_imports():
    versions = collect_versions()
    assert {"sarfewshot", "torch", "timm", "numpy", "python"} <= versions.keys()
    code = (
        "import sys, sarfewshot.results, sarfewshot.results.plots, sarfewshot.cli.leaderboard\n"
        "sarfewshot.results.collect_versions()\n"
        "bad = [m for m in ('torch', 'sarfewshot.engine', 'sarfewshot.models', 'scipy') "
        "if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
