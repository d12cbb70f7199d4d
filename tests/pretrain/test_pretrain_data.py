"""Unlabelled pretraining data: discovery, scaling to [0, 1], augmentation, the epoch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sarfewshot.errors import DatasetError
from sarfewshot.pretrain.data import (
    AugmentSpec,
    EpochSampler,
    UnlabelledImages,
    augment,
    find_unlabelled_images,
    load_unit_image,
    to_unit_range,
)
from sarfewshot.utils.seeding import torch_generator
from tests.pretrain.synthetic_sar import write_chips


def test_finds_every_image_recursively_in_mixed_formats(tmp_path):
    chips = write_chips(tmp_path / "a", n=4)
    deep = tmp_path / "b" / "x" / "y"
    deep.mkdir(parents=True)
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(deep / "w16.png")
    Image.fromarray(np.full((20, 20), 3.5, dtype=np.float32)).save(deep / "f32.tif")
    (deep / "notes.txt").write_text("not an image")
    files = find_unlabelled_images([tmp_path / "a", tmp_path / "b"])
    assert set(files) == set(chips) | {deep / "w16.png", deep / "f32.tif"}


def test_missing_or_empty_folders_raise(tmp_path):
    with pytest.raises(DatasetError, match="--data"):
        find_unlabelled_images([])
    with pytest.raises(DatasetError, match="not found"):
        find_unlabelled_images([tmp_path / "nope"])
    with pytest.raises(DatasetError, match="no readable image"):
        find_unlabelled_images([tmp_path])


def test_scaling_keeps_16_bit_and_scales_float_by_percentile(tmp_path):
    Image.fromarray(np.array([[0, 32768], [65535, 1]], dtype=np.uint16)).save(tmp_path / "a.png")
    Image.fromarray(np.array([[0, 128], [255, 1]], dtype=np.uint8)).save(tmp_path / "b.png")
    a = load_unit_image(tmp_path / "a.png")
    assert a.shape == (1, 2, 2)
    assert a[0, 0, 1].item() == pytest.approx(32768 / 65535) and a[0, 1, 1].item() > 0
    assert load_unit_image(tmp_path / "b.png")[0, 0, 1].item() == pytest.approx(128 / 255)
    f = to_unit_range(np.arange(1000, dtype=np.float32), None, 99.9)
    assert f.max() == 1.0 and f[500] == pytest.approx(500 / np.percentile(np.arange(1000), 99.9))
    assert to_unit_range(np.zeros((3, 3), np.float32), None, 99.9).max() == 0.0


def test_augmentation_is_seeded_and_in_range():
    img = torch.rand(1, 90, 70, generator=torch_generator(0, "img"))
    spec = AugmentSpec(size=64)
    a = augment(img, spec, torch_generator(0, "aug", 1))
    b = augment(img, spec, torch_generator(0, "aug", 1))
    c = augment(img, spec, torch_generator(0, "aug", 2))
    assert a.shape == (1, 64, 64) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dataset_items_depend_on_index_and_epoch_only(tmp_path):
    files = write_chips(tmp_path, n=3)
    ds = UnlabelledImages(files, AugmentSpec(size=32), seed=7)
    assert torch.equal(ds[(1, 0)], ds[(1, 0)])
    assert not torch.equal(ds[(1, 0)], ds[(1, 1)])
    other = UnlabelledImages(files, AugmentSpec(size=32), seed=8)
    assert not torch.equal(ds[(1, 0)], other[(1, 0)])


def test_unreadable_image_is_skipped(tmp_path):
    files = write_chips(tmp_path, n=2)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = UnlabelledImages([bad, *files], AugmentSpec(size=32), seed=0)
    assert ds[(0, 0)].shape == (1, 32, 32)


def test_sampler_partitions_ranks_and_resumes_mid_epoch():
    full = EpochSampler(10, 1, 0, seed=3)
    full.set_epoch(2)
    order = [i for i, _ in full]
    assert sorted(order) == list(range(10))
    ranks = [EpochSampler(10, 3, r, seed=3) for r in range(3)]
    shares = []
    for s in ranks:
        s.set_epoch(2)
        shares.append([i for i, e in s if e == 2])
    assert all(len(s) == 4 for s in shares)  # padded to 12 by wrapping
    assert set(sum(shares, [])) == set(range(10))
    full.set_epoch(2, start=6)
    assert [i for i, _ in full] == order[6:] and len(full) == 4
    full.set_epoch(3)
    assert [i for i, _ in full] != order
