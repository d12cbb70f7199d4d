"""Grid helpers: sharding, SLURM arrays, cell indexing, request checks (no training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sarfewshot.data.base import Datum, Listing
from sarfewshot.engine.grid.data import cell_data
from sarfewshot.engine.grid.plan import (
    BackboneRequest,
    Cell,
    GridRequest,
    parse_shard,
    select_shard,
    shard_from_env,
)
from sarfewshot.engine.grid.resolve import ResolvedDataset, backbone_label
from sarfewshot.engine.grid.runner import GridRunner
from sarfewshot.engine.protocol import REQUIRES_FEATURES, REQUIRES_IMAGES
from sarfewshot.errors import ConfigError


def _cells(n: int) -> list[Cell]:
    return [Cell(0, "d", "knn", 1, s) for s in range(n)]


def test_parse_shard_is_one_based_and_checked():
    assert parse_shard("1/4") == (0, 4)
    assert parse_shard("4/4") == (3, 4)
    for bad in ("0/4", "5/4", "1/0", "a/b", "3"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_partition_the_cells(count):
    cells = _cells(10)
    parts = [select_shard(cells, (i, count)) for i in range(count)]
    seen = [id(c) for part in parts for c in part]
    assert sorted(seen) == sorted(id(c) for c in cells)  # every cell exactly once
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert select_shard(cells, None) == cells


def test_slurm_array_variables_pick_the_shard():
    assert shard_from_env({}) is None
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard_from_env(env) == (3, 4)
    assert shard_from_env({**env, "SLURM_ARRAY_TASK_MIN": "1"}) == (2, 4)
    with pytest.raises(ConfigError, match="SLURM_ARRAY_TASK_ID"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"})


def test_backbone_label_tells_weightless_architectures_apart():
    assert backbone_label(BackboneRequest("random", None, "irpe_vit_micro_patch8")) == (
        "random@irpe_vit_micro_patch8"
    )
    assert backbone_label(BackboneRequest("random")) == "random"
    assert backbone_label(BackboneRequest("sarjepa", "w.pth", "x")) == "sarjepa"


class _Split:
    def __init__(self, train, val, test):
        self.train, self.val, self.test, self.shots, self.seed = train, val, test, 1, 3


def _dataset() -> ResolvedDataset:
    train = [Datum(f"tr/{i}.png", i % 2, 0, "ab"[i % 2]) for i in range(6)]
    test = [Datum(f"te/{i}.png", i % 2, 0, "ab"[i % 2]) for i in range(4)]
    listing = Listing(root="/x", classnames=["a", "b"], train=train, test=test)
    return ResolvedDataset(
        name="toy",
        obj=None,
        listing=listing,
        listing_sha256=listing.sha256(),
        train_rows={d.impath: i for i, d in enumerate(train)},
        test_rows={d.impath: 6 + i for i, d in enumerate(test)},
        split_name="toy",
    )


def test_cell_data_indexes_the_shared_tensors():
    ds = _dataset()
    lt = ds.listing.train
    split = _Split([lt[4], lt[1]], [lt[0]], ds.listing.test)
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2)
    feats = np.arange(10, dtype=np.float32)[:, None].repeat(3, axis=1)
    data = cell_data(split, ds, frozenset({REQUIRES_IMAGES, REQUIRES_FEATURES}), images, feats)
    assert data.train_features[:, 0].tolist() == [4.0, 1.0]
    assert data.val_features[:, 0].tolist() == [0.0]
    assert data.test_features[:, 0].tolist() == [6.0, 7.0, 8.0, 9.0]
    assert data.train_images[:, 0, 0, 0].tolist() == [4, 1]
    assert data.train_labels.tolist() == [0, 1] and data.test_labels.tolist() == [0, 1, 0, 1]
    assert data.shots == 1 and data.seed == 3 and data.dataset == "toy"
    # the whole test set is a view of the shared tensor, not a copy
    assert data.test_images.data_ptr() == images[6:].data_ptr()


def test_cell_data_refuses_entries_missing_from_the_listing():
    ds = _dataset()
    split = _Split([Datum("elsewhere.png", 0)], [], ds.listing.test)
    with pytest.raises(Exception, match="no longer matches"):
        cell_data(split, ds, frozenset({REQUIRES_FEATURES}), None, np.zeros((10, 2)))


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [("shots", [0], "--shots"), ("backbones", [], "--backbone"), ("protocols", [], "--protocol")],
)
def test_bad_requests_name_the_flag(field, value, flag):
    kwargs = dict(backbones=[BackboneRequest("random")], datasets=["synthetic"], shots=[1])
    kwargs[field] = value
    with pytest.raises(ConfigError, match=flag):
        GridRunner(GridRequest(**kwargs)).prepare()
