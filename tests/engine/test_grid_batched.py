"""The batched executor: seeds trained together give the serial path's numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sarfewshot.datasets.synthetic import generate_synthetic
from sarfewshot.engine.grid import BackboneRequest, GridRequest, run_grid
from sarfewshot.engine.grid.batched import BatchedExecutor, seed_memory
from sarfewshot.engine.grid.plan import Cell
from sarfewshot.results.records import iter_records

ARCH = "irpe_vit_micro_patch8"


def _grid(root: Path, out: Path, serial: bool, dataset: str, opts: list[str], **kw) -> dict:
    req = GridRequest(
        backbones=[BackboneRequest("random", None, ARCH)],
        datasets=[dataset],
        protocols=["finetune", "linear"],
        output=out,
        root=str(root),
        progress=False,
        serial=serial,
        opts=opts,
        **kw,
    )
    summary = run_grid(req, printer=lambda *a: None)
    assert summary.failed == 0
    return {(r["protocol"], r["shots"], r["seed"]): r for r in iter_records([out])}


def _assert_same(batched: dict, serial: dict, num_test: int) -> None:
    assert batched.keys() == serial.keys()
    for key, b in batched.items():
        s = serial[key]
        assert b["execution"] == {"executor": "batched", "group_size": 3}, key
        assert s["execution"] == {"executor": "serial", "group_size": 1}, key
        gap = abs(b["metrics"]["accuracy"] - s["metrics"]["accuracy"])
        assert gap <= 100.0 / num_test + 1e-9, key  # at most one test image
        for loss in ("final_train_loss", "first_train_loss"):
            assert math.isclose(b["metrics"][loss], s["metrics"][loss], rel_tol=1e-4), key
        assert b["split"]["support_counts"] == s["split"]["support_counts"]


def test_batched_grid_matches_serial_on_synthetic(tmp_path):
    root = generate_synthetic(
        tmp_path / "data", n_train_per_class=6, n_test_per_class=3, size=64, progress_bar=False
    )
    opts = ["INPUT.SAR.CROP", "0", "OPTIM.MAX_EPOCH", "3", "DATALOADER.TRAIN_X.BATCH_SIZE", "8"]
    kw = dict(shots=[2], seeds=[1, 2, 3], img_size=32)
    batched = _grid(root, tmp_path / "b", False, "synthetic", opts, **kw)
    serial = _grid(root, tmp_path / "s", True, "synthetic", opts, **kw)
    _assert_same(batched, serial, num_test=30)


@pytest.mark.realdata
def test_batched_grid_matches_serial_on_mstar(mstar_soc_root, tmp_path):
    opts = ["OPTIM.MAX_EPOCH", "4", "OPTIM.LR", "0.003"]
    kw = dict(shots=[5], seeds=[1, 2, 3], img_size=32)
    batched = _grid(mstar_soc_root, tmp_path / "b", False, "mstar", opts, **kw)
    serial = _grid(mstar_soc_root, tmp_path / "s", True, "mstar", opts, **kw)
    _assert_same(batched, serial, num_test=2425)


def test_groups_are_the_seeds_of_one_backbone_dataset_protocol_and_k():
    cells = [Cell(0, "d", p, k, s) for p in ("finetune", "knn") for k in (1, 2) for s in (1, 2)]
    groups = BatchedExecutor.groups(None, cells)  # type: ignore[arg-type]
    assert [[(c.protocol, c.shots, c.seed) for c in g] for g in groups] == [
        [("finetune", 1, 1), ("finetune", 1, 2)],
        [("finetune", 2, 1), ("finetune", 2, 2)],
        [("knn", 1, 1), ("knn", 1, 2)],
        [("knn", 2, 1), ("knn", 2, 2)],
    ]


def test_seed_memory_counts_weights_and_activations():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 5))
    need = seed_memory(model, torch.zeros(4, 10))
    weights = (10 * 20 + 20 + 20 * 5 + 5) * 4
    activations = (4 * 20 + 4 * 5 + 4 * 5) * 4  # both layers and the Sequential's output
    assert need == 4 * weights + 2 * activations


def test_the_default_executor_follows_the_device(tmp_path):
    from sarfewshot.engine.grid.batched import BatchedExecutor
    from sarfewshot.engine.grid.executors import SerialExecutor
    from sarfewshot.engine.grid.runner import GridRunner

    class _Ws:
        device = "cpu"

    def runner(serial):
        req = GridRequest(backbones=[], datasets=[], shots=[1], output=tmp_path, serial=serial)
        return GridRunner(req)

    # stacking was measured slower than one cell at a time on a CPU (docs/performance.md)
    assert isinstance(runner(None).executor(_Ws()), SerialExecutor)
    assert isinstance(runner(False).executor(_Ws()), BatchedExecutor)
    _Ws.device = "cuda:0"
    assert isinstance(runner(None).executor(_Ws()), BatchedExecutor)
    assert isinstance(runner(True).executor(_Ws()), SerialExecutor)


def test_eval_flags_choose_the_executor():
    from sarfewshot.cli.eval import request_from_args
    from sarfewshot.cli.main import build_parser

    base = ["eval", "--backbone", "random", "--dataset", "synthetic", "--shots", "1"]
    serial = [
        request_from_args(build_parser().parse_args([*base, *f])).serial
        for f in ([], ["--serial"], ["--batched"])
    ]
    assert serial == [None, True, False]
