"""The grid end to end on a tiny synthetic tree: records, resume, force, shards, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sarfewshot.datasets.synthetic import generate_synthetic
from sarfewshot.engine.grid import BackboneRequest, GridRequest, run_grid
from sarfewshot.errors import ConfigError
from sarfewshot.results.aggregate import aggregate_records
from sarfewshot.results.export import csv_text
from sarfewshot.results.records import iter_records, record_files

ARCH = "irpe_vit_micro_patch8"
FAST = ["INPUT.SAR.CROP", "0", "OPTIM.MAX_EPOCH", "2", "DATALOADER.TEST.BATCH_SIZE", "64"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    return generate_synthetic(
        out, n_train_per_class=6, n_test_per_class=3, size=64, progress_bar=False
    )


def _req(root: Path, out: Path, **kw) -> GridRequest:
    base = dict(
        backbones=[BackboneRequest("random", None, ARCH)],
        datasets=["synthetic"],
        shots=[1, 2],
        protocols=["knn", "linear"],
        seeds=[1, 2],
        output=out,
        root=str(root),
        img_size=32,
        opts=list(FAST),
        progress=False,
    )
    base.update(kw)
    return GridRequest(**base)


def _run(req: GridRequest):
    """The summary and the printed lines after the per-backbone architecture lines."""
    lines: list[str] = []
    summary = run_grid(req, printer=lines.append)
    n = len(req.backbones)
    assert all(line.startswith("backbone ") for line in lines[:n]), lines[:n]
    return summary, lines[n:]


def _metrics(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text())["metrics"] for p in record_files(out)}


def test_second_run_does_no_work_and_force_recomputes(root, tmp_path):
    out = tmp_path / "runs"
    first, lines = _run(_req(root, out))
    assert (first.ran, first.failed) == (8, 0)
    assert lines[0] == "0 cells already done, 8 to run"
    stamps = {p: p.stat().st_mtime_ns for p in record_files(out)}
    again, lines = _run(_req(root, out))
    assert again.ran == 0 and lines[0] == "8 cells already done, 0 to run"
    assert {p: p.stat().st_mtime_ns for p in record_files(out)} == stamps
    before = _metrics(out)
    forced, _ = _run(_req(root, out, force=True))
    assert forced.ran == 8
    assert _metrics(out) == before  # same command, same numbers
    # the leaderboard CSV is a pure function of the records
    rows = aggregate_records(list(iter_records([out])))
    assert (out / "leaderboard.csv").read_text() == csv_text(rows)
    record = json.loads(record_files(out)[0].read_text())
    assert record["split"]["path"].startswith("splits/synthetic/")
    assert (out / record["split"]["path"]).is_file()


def test_shards_merge_into_the_full_grid(root, tmp_path):
    # Serial: a shard's seed groups differ from the full grid's, and batched cells equal serial
    # ones only up to reduction order; the exact comparison below is about the sharding.
    full, _ = _run(_req(root, tmp_path / "full", serial=True))
    one, _ = _run(_req(root, tmp_path / "sharded", shard=(0, 2), serial=True))
    two, lines = _run(_req(root, tmp_path / "sharded", shard=(1, 2), serial=True))
    assert one.ran + two.ran == full.ran == 8 and one.ran == 4
    assert lines[0] == "0 cells already done, 4 to run"
    assert _metrics(tmp_path / "sharded") == _metrics(tmp_path / "full")


def test_failed_cell_is_recorded_and_the_grid_goes_on(root, tmp_path, monkeypatch):
    from sarfewshot.trainers._backbone import BackboneTrainer

    original = BackboneTrainer.forward_backward

    def crash_on_seed_2(self, batch):
        if int(self.cfg.SEED) == 2:
            raise RuntimeError("CUDA error: an illegal memory access")
        return original(self, batch)

    monkeypatch.setattr(BackboneTrainer, "forward_backward", crash_on_seed_2)
    out = tmp_path / "runs"
    summary, lines = _run(_req(root, out, serial=True))  # the patch is on the serial path
    assert (summary.ran, summary.failed) == (8, 2)
    records = [json.loads(p.read_text()) for p in record_files(out)]
    failed = [r for r in records if r["status"] == "failed"]
    assert {(r["protocol"], r["seed"]) for r in failed} == {("linear", 2)}
    assert all("illegal memory access" in r["error"] for r in failed)
    assert any("FAILED" in line for line in lines)
    assert sum(r.n_failed for r in aggregate_records(records)) == 2
    monkeypatch.setattr(BackboneTrainer, "forward_backward", original)
    retry, lines = _run(_req(root, out))
    assert lines[0] == "6 cells already done, 2 to run"  # failures are retried
    assert (retry.ran, retry.failed) == (2, 0)


def test_non_finite_loss_is_recorded_diverged_and_left_out(root, tmp_path, monkeypatch):
    import torch

    from sarfewshot.trainers._backbone import BackboneTrainer

    original = BackboneTrainer.forward_backward

    def nan_on_seed_2(self, batch):
        if int(self.cfg.SEED) == 2:
            self.model_backward_and_update(torch.tensor(float("nan"), requires_grad=True))
        return original(self, batch)

    monkeypatch.setattr(BackboneTrainer, "forward_backward", nan_on_seed_2)
    out = tmp_path / "runs"
    summary, lines = _run(_req(root, out, serial=True))  # the patch is on the serial path
    assert (summary.ran, summary.failed) == (8, 2)
    records = [json.loads(p.read_text()) for p in record_files(out)]
    diverged = [r for r in records if r["status"] == "diverged"]
    assert {(r["protocol"], r["seed"]) for r in diverged} == {("linear", 2)}
    assert all("NaN" in r["error"] for r in diverged)
    assert any("DIVERGED" in line for line in lines)
    rows = aggregate_records(records)
    linear = [r for r in rows if r.protocol == "linear"]
    assert sum(r.n_diverged for r in rows) == 2 and all(2 not in r.seeds for r in linear)
    assert any("diverged" in line for line in lines[-4:])  # listed under the unfinished cells
    again, lines = _run(_req(root, out))  # the same config diverges again: not retried
    assert again.ran == 0 and lines[0] == "8 cells already done, 0 to run"


def test_interrupt_keeps_finished_records_and_resumes(root, tmp_path, monkeypatch):
    from sarfewshot.trainers.knn import KNN

    calls = {"n": 0}
    original = KNN.fit.__func__

    def interrupt_third(cls, cfg, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(cls, cfg, data)

    monkeypatch.setattr(KNN, "fit", classmethod(interrupt_third))
    out = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        _run(_req(root, out))
    assert len(record_files(out)) == 2
    monkeypatch.setattr(KNN, "fit", classmethod(original))
    # a half-written record (as a crash mid-write by a foreign tool would leave) is recomputed
    record_files(out)[0].write_text('{"schema": 1, "key": ')
    summary, lines = _run(_req(root, out))
    assert lines[0] == "1 cells already done, 7 to run" and summary.ran == 7


def test_cached_and_uncached_linear_agree_in_the_grid(root, tmp_path):
    kw = dict(protocols=["linear"], shots=[2], seeds=[1])
    _run(_req(root, tmp_path / "cached", **kw))
    _run(
        _req(
            root,
            tmp_path / "uncached",
            feature_cache=False,
            opts=[*FAST, "TRAINER.LINEAR.FEATURE_CACHE", "False"],
            **kw,
        )
    )
    cached, uncached = _metrics(tmp_path / "cached"), _metrics(tmp_path / "uncached")
    assert cached.keys() == uncached.keys()
    for name, m in cached.items():
        # the cache extracts features in other batches than the loader, so the float sums run
        # in another order (visible at one thread): the same predictions, losses to 1e-4
        assert m["confusion_matrix"] == uncached[name]["confusion_matrix"]
        assert m["final_train_loss"] == pytest.approx(uncached[name]["final_train_loss"], 1e-4)
    assert not (tmp_path / "uncached" / "cache" / "features").exists()


def test_other_config_in_the_same_folder_needs_force(root, tmp_path):
    out = tmp_path / "runs"
    kw = dict(protocols=["knn"], shots=[1], seeds=[1])
    _run(_req(root, out, **kw))
    changed = _req(root, out, opts=[*FAST, "TRAINER.KNN.K", "3"], **kw)
    with pytest.raises(ConfigError, match="--force"):
        _run(changed)
    changed.force = True
    assert _run(changed)[0].ran == 1


def test_prepare_prints_each_backbones_arch_and_its_source(root, tmp_path):
    import torch

    from sarfewshot.engine.grid.runner import GridRunner
    from tests.models.modelkit import random_irpe_state, save_release_checkpoint

    state = random_irpe_state(8, 32, 2, 2, 4.0, True, torch.Generator().manual_seed(0))
    ckpt = save_release_checkpoint(tmp_path / "pt.pth", state, {})
    backbones = [
        BackboneRequest("sarjepa", str(ckpt), None),
        BackboneRequest("random", None, ARCH),
        BackboneRequest("random", None, None),
    ]
    lines: list[str] = []
    GridRunner(_req(root, tmp_path / "runs", backbones=backbones), lines.append).prepare()
    assert lines == [
        "backbone sarjepa: arch irpe:patch=8,dim=32,depth=2,heads=2 (inferred from the "
        f"checkpoint {ckpt})",
        "backbone random@irpe_vit_micro_patch8: arch irpe:patch=8,dim=64,depth=2,heads=2 "
        "(given by --arch / MODEL.BACKBONE.ARCH)",
        "backbone random: arch irpe:patch=16,dim=768,depth=12,heads=12 (the registry default "
        "for a weight-less backbone)",
    ]


def test_bf16_and_fp32_cells_never_merge(root, tmp_path):
    out = tmp_path / "runs"
    kw = dict(protocols=["knn"], shots=[1], seeds=[1])
    _run(_req(root, out, **kw))
    bf16 = _req(root, out, opts=[*FAST, "MODEL.PRECISION", "bf16"], **kw)
    with pytest.raises(ConfigError, match="different config"):
        _run(bf16)
    (fp32_record,) = [json.loads(p.read_text()) for p in record_files(out)]
    bf16.force = True
    _run(bf16)
    (bf16_record,) = [json.loads(p.read_text()) for p in record_files(out)]
    assert fp32_record["config"]["MODEL"]["PRECISION"] == "fp32"
    assert fp32_record["backbone"]["precision"] == "fp32"
    assert bf16_record["config"]["MODEL"]["PRECISION"] == "bf16"
    assert bf16_record["backbone"]["precision"] == "bf16"
    assert fp32_record["config_sha256"] != bf16_record["config_sha256"]
    manifests = sorted((out / "cache" / "features").glob("*.npy"))
    assert len(manifests) == 2  # one feature cache per precision, neither reused for the other
