"""Benchmark: pretraining input throughput (images/s) from packed shards against the folder.

Three readers of the same chips, each timed over one epoch in the pretraining sampler's
(seed, epoch) order, one process, no DataLoader workers:

- ``folder``: ``UnlabelledImages`` (open and decode every file, augment): today's ``--data DIR``;
- ``shards``: ``ShardImages`` (seek into the tar shards through their offset tables, check each
  sample's CRC-32, augment): ``--data SHARDS/`` after ``sarfewshot data pack``;
- ``decode-only`` rows: the same two without augmentation, the shard reader once more without
  its CRC-32 check (the reader before per-sample checksums), and ``webdataset.WebDataset``
  reading the shards sequentially (the streaming reader that needs no offset table).

Usage:
    python scripts/bench/bench_shards.py ../shared/data/MSTAR_SOC/TRAIN [--size 224] [--limit N]

The shards are packed into a temporary folder first (the packing time is printed too).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from sarfewshot.cli.data import pack_sources
from sarfewshot.data.shards import ShardReader, decode_chip, pack_shards, read_index
from sarfewshot.pretrain.data import (
    AugmentSpec,
    EpochSampler,
    ShardImages,
    UnlabelledImages,
    load_unit_image,
)


def rate(name: str, n: int, fn) -> float:
    """Run ``fn`` (which reads ``n`` images) and print images/s."""
    start = time.perf_counter()
    fn()
    per_s = n / (time.perf_counter() - start)
    print(f"{name:28s} {per_s:8.0f} images/s")
    return per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a folder of chips")
    parser.add_argument("--size", type=int, default=224, help="augmented image size")
    parser.add_argument("--limit", type=int, default=0, help="first N chips only (0: all)")
    args = parser.parse_args()
    files = pack_sources([args.data])
    if args.limit:
        files = files[: args.limit]
    with tempfile.TemporaryDirectory(prefix="sfs_shards_") as tmp:
        start = time.perf_counter()
        pack_shards(files, Path(tmp) / "shards", shard_size=256 * 10**6)
        print(f"packed {len(files)} chips in {time.perf_counter() - start:.1f} s")
        measure(files, Path(tmp) / "shards", args.size)


def measure(files: list, folder_of_shards: Path, size: int) -> None:
    """Time the readers over one epoch (see the module docstring)."""
    tmp = folder_of_shards.parent
    spec = AugmentSpec(size=size)
    folder = UnlabelledImages([p for p, _ in files], spec, seed=0)
    shards = ShardImages(tmp / "shards", spec, seed=0)
    order = list(EpochSampler(len(files), seed=0))
    n = len(order)
    reader = ShardReader(tmp / "shards")
    index = read_index(tmp / "shards")
    urls = [str(index.folder / s.tar) for s in index.shards]

    def wds_sequential() -> None:
        import webdataset as wds

        for sample in wds.WebDataset(urls, shardshuffle=False):
            np.load(io.BytesIO(sample["npy"]))

    def unchecked(k: int) -> np.ndarray:
        # the reader before per-sample CRC-32s: offset table, pread, decode, no check
        shard, pos = reader.locate(k)
        offset, size = (int(v) for v in reader._table(shard)[pos][:2])
        return decode_chip(os.pread(reader._fd(shard), size, offset))

    f_dec = rate("folder, decode only", n, lambda: [load_unit_image(files[i][0]) for i, _ in order])
    u_dec = rate("shards, decode only, no CRC", n, lambda: [unchecked(i) for i, _ in order])
    s_dec = rate("shards, decode only", n, lambda: [reader.read(i) for i, _ in order])
    rate("webdataset sequential", n, wds_sequential)
    f_aug = rate("folder, decode + augment", n, lambda: [folder[item] for item in order])
    s_aug = rate("shards, decode + augment", n, lambda: [shards[item] for item in order])
    print(f"shards / folder: {s_dec / f_dec:.2f}x decode only, {s_aug / f_aug:.2f}x with augment")
    print(f"CRC-32 check on read: {s_dec / u_dec:.2f}x the unchecked decode-only rate")


if __name__ == "__main__":
    main()
