"""DataManager: batch dicts, seeded order, Dassl's drop_last rule, in-memory tensors, files."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from sarfewshot.data.base import DatasetBase, Datum
from sarfewshot.data.datamanager import DataManager
from sarfewshot.engine.config import get_cfg_default
from sarfewshot.errors import ConfigError, DatasetError


def _cfg(seed=0, workers=0, bs=4):
    cfg = get_cfg_default()
    cfg.SEED = seed
    cfg.USE_CUDA = False
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = bs
    cfg.DATALOADER.TEST.BATCH_SIZE = 5
    return cfg


def _tensors(n=10, classes=2):
    images = torch.arange(n * 4, dtype=torch.uint8).reshape(n, 1, 2, 2)
    labels = np.arange(n) % classes
    return images, labels


def _dm(cfg, n=10, **kw):
    images, labels = _tensors(n)
    return DataManager.from_tensors(cfg, images, labels, images, labels, ["x", "y"], **kw)


def _order(loader, epochs=2):
    return [int(i) for _ in range(epochs) for batch in loader for i in batch["index"]]


def test_from_tensors_batches_are_dassl_dicts():
    dm = _dm(_cfg(), test_impaths=[f"t{i}.png" for i in range(10)])
    assert dm.num_classes == 2 and dm.lab2cname == {0: "x", 1: "y"}
    assert dm.dataset.classnames == ["x", "y"] and dm.val_loader is None
    batch = next(iter(dm.test_loader))
    assert set(batch) == {"img", "label", "domain", "impath", "index"}
    assert batch["img"].dtype == torch.float32 and batch["img"].shape == (5, 1, 2, 2)
    assert torch.allclose(batch["img"][1].flatten(), torch.tensor([4.0, 5, 6, 7]) / 255)
    assert batch["label"].tolist() == [0, 1, 0, 1, 0] and batch["label"].dtype == torch.int64
    assert batch["impath"][0] == "t0.png"
    assert next(iter(dm.train_loader_x))["impath"][0] == ""


def test_train_order_is_seeded_and_test_order_fixed():
    a, b, c = _dm(_cfg(seed=0)), _dm(_cfg(seed=0)), _dm(_cfg(seed=1))
    assert _order(a.train_loader_x) == _order(b.train_loader_x)
    assert _order(a.train_loader_x) != _order(c.train_loader_x)
    first, second = _order(a.train_loader_x, 1), _order(a.train_loader_x, 1)
    assert first != second  # reshuffled every epoch
    cfg = _cfg(seed=3)
    cfg.DATALOADER.TEST.SAMPLER = "RandomSampler"
    assert _order(_dm(cfg).test_loader, 1) == list(range(10))


def test_workers_give_the_same_order():
    plain = _order(_dm(_cfg(seed=5)).train_loader_x)
    assert _order(_dm(_cfg(seed=5, workers=1)).train_loader_x) == plain


def test_drop_last_rule_and_samplers():
    dm = _dm(_cfg(bs=4), n=10)
    assert len(dm.train_loader_x) == 2  # 10 items, batch 4: the partial batch is dropped
    assert len(dm.test_loader) == 2
    small = _dm(_cfg(bs=16), n=10)
    assert len(small.train_loader_x) == 1  # fewer items than a batch: keep them all
    cfg = _cfg()
    cfg.DATALOADER.TRAIN_X.SAMPLER = "SequentialSampler"
    assert _order(_dm(cfg).train_loader_x, 1) == list(range(8))
    cfg.DATALOADER.TRAIN_X.SAMPLER = "RandomDomainSampler"
    with pytest.raises(ConfigError, match="TRAIN_X.SAMPLER"):
        _dm(cfg)


def test_bad_labels_and_empty_train():
    images, labels = _tensors()
    with pytest.raises(DatasetError, match="train labels"):
        DataManager.from_tensors(_cfg(), images, labels + 5, images, labels, ["x", "y"])
    with pytest.raises(DatasetError, match="empty"):
        DataManager(_cfg(), dataset=DatasetBase(train_x=[]), test_transform=lambda p: p)


def test_val_split_from_tensors():
    images, labels = _tensors()
    dm = DataManager.from_tensors(
        _cfg(),
        images,
        labels,
        images,
        labels,
        ["x", "y"],
        val_images=images[:3],
        val_labels=labels[:3],
    )
    assert len(dm.val_loader.dataset) == 3 and len(dm.dataset.val) == 3


def test_datum_dataset_with_files_and_lazy_build(tmp_path, monkeypatch):
    from PIL import Image

    transforms = pytest.importorskip("sarfewshot.data.transforms")
    items = []
    for i, cls in enumerate(["a", "b", "a", "b"]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((20, 24), 40 * (i + 1), dtype=np.uint8)).save(path)
        items.append(Datum(impath=str(path), label=int(cls == "b"), classname=cls))
    dataset = DatasetBase(train_x=items, test=items[:2])
    cfg = _cfg(bs=2)
    cfg.INPUT.SIZE = (16, 16)
    cfg.INPUT.SAR.CROP = 0
    fake = types.ModuleType("sarfewshot.data.build")
    fake.build_dataset = lambda c: dataset
    monkeypatch.setitem(sys.modules, "sarfewshot.data.build", fake)
    dm = DataManager(cfg)  # dataset and transform built lazily from the config
    assert dm.lab2cname == {0: "a", 1: "b"} and dm.val_loader is None
    batch = next(iter(dm.test_loader))
    assert batch["img"].shape == (2, 1, 16, 16)
    want = transforms.build_eval_transform(transforms.spec_from_cfg(cfg))(items[1].impath)
    assert torch.equal(batch["img"][1], want)
    assert batch["impath"] == [items[0].impath, items[1].impath]
