"""``pretrain --data SHARDS/`` on the real MSTAR TRAIN chips: the folder run's samples and order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sarfewshot.cli.main import main
from sarfewshot.errors import DatasetError
from sarfewshot.pretrain.data import (
    AugmentSpec,
    EpochSampler,
    ShardImages,
    UnlabelledImages,
    build_unlabelled,
    find_unlabelled_images,
)
from sarfewshot.pretrain.train import LOG_NAME, load_checkpoint, pretrain


@pytest.fixture(scope="module")
def mstar_subset(mstar_soc_root) -> Path:
    """One class folder of the real MSTAR TRAIN chips (233 JPEGs) keeps the test short."""
    folder = mstar_soc_root / "MSTAR_SOC" / "TRAIN" / "BTR70"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


@pytest.fixture(scope="module")
def shards(mstar_subset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "shards"
    argv = ["data", "pack", "--data", str(mstar_subset), "--out", str(out), "--shard-size", "1MB"]
    assert main(argv) == 0
    return out


def test_shard_dataset_yields_the_folder_samples_in_the_same_order(mstar_subset, shards):
    spec = AugmentSpec(size=64)
    folder = UnlabelledImages(find_unlabelled_images([mstar_subset]), spec, seed=3)
    packed = build_unlabelled([shards], spec, seed=3)
    assert isinstance(packed, ShardImages) and len(packed) == len(folder)
    assert len(packed.reader.index.shards) > 1
    sampler = EpochSampler(len(folder), num_replicas=2, rank=1, seed=3)
    sampler.set_epoch(2, start=5)
    for item in list(sampler)[:12]:
        assert torch.equal(packed[item], folder[item]), item


def _losses(out: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (out / LOG_NAME).read_text().splitlines()]


def test_pretraining_from_shards_matches_the_folder_and_resumes_mid_epoch(
    mstar_subset, shards, tmp_path
):
    opts = ["DATA.BATCH_SIZE", "4", "TRAIN.LOG_EVERY", "1", "TRAIN.TENSORBOARD", "False"]
    kw = dict(config="sarjepa_tiny", opts=opts, seed=5)
    a = pretrain(data=[mstar_subset], output=tmp_path / "folder", max_steps=4, **kw)
    pretrain(data=[shards], output=tmp_path / "shards", max_steps=2, **kw)
    b = pretrain(data=[shards], output=tmp_path / "shards", max_steps=4, resume=True, **kw)
    ma, mb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert _losses(tmp_path / "folder") == _losses(tmp_path / "shards")


def test_a_shard_folder_cannot_be_mixed_with_image_folders(mstar_subset, shards):
    with pytest.raises(DatasetError, match="packed shard folder; pass it alone"):
        build_unlabelled([shards, mstar_subset], AugmentSpec(size=64), seed=0)


def _flip_payload_byte(shards: Path, k: int) -> Path:
    """Flip the last pixel byte of sample ``k`` in its tar (the chip still decodes)."""
    from sarfewshot.data.shards import ShardReader

    reader = ShardReader(shards)
    shard, pos = reader.locate(k)
    offset, size = (int(v) for v in reader._table(shard)[pos][:2])
    reader.close()
    tar = shards / reader.index.shards[shard].tar
    data = bytearray(tar.read_bytes())
    data[offset + size - 1] ^= 0x5A
    tar.write_bytes(bytes(data))
    return tar


@pytest.mark.realdata
def test_a_corrupted_real_chip_in_a_shard_is_never_read_silently(mstar_subset, tmp_path, capsys):
    out = tmp_path / "shards"
    assert main(["data", "pack", "--data", str(mstar_subset), "--out", str(out)]) == 0
    tar = _flip_payload_byte(out, 17)
    packed = build_unlabelled([out], AugmentSpec(size=64), seed=0)
    packed[(16, 0)]  # a sound sample still reads
    with pytest.raises(DatasetError, match=r"CRC-32") as err:
        packed[(17, 0)]
    assert str(tar) in str(err.value) and "000000017.npy" in str(err.value)
    capsys.readouterr()
    assert main(["data", "verify", str(out)]) == 1
    report = capsys.readouterr().err
    assert f"{tar}: sha256 differs" in report and "sample 000000017.npy" in report
    assert "000000016" not in report
