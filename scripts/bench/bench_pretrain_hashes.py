"""Benchmark: carrying the pretraining images' content hashes in a checkpoint, exact or sketched.

At ``--n`` images (default one million, the SAR-1M scale) it compares

- ``exact``: the sorted distinct sha256 digests as a (n, 32) uint8 tensor, what ``pretrain``
  writes (``sarfewshot.pretrain.provenance``): the bytes it adds to a checkpoint, the time to
  build it, to save and load it, to turn it into a lookup set and to count a TEST set in it;
- ``bloom``: a Bloom filter of the same digests at a false-positive rate of ``--fpr`` (bit
  positions taken from the digests' own bits, k = -log2(fpr)): its size and times, and the
  expected number of false "seen" images in a TEST set of ``--scored`` images.

Synthetic digests (sha256 of the sample number) stand in for the images: only sizes and times
are measured, and they do not depend on what was hashed.

Usage:
    python scripts/bench/bench_pretrain_hashes.py [--n 1000000] [--scored 2425] [--fpr 1e-6]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import time

import numpy as np
import torch

from sarfewshot.data.fingerprint import hashes_tensor, tensor_hashes


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def _roundtrip(obj) -> tuple[int, float, float]:
    buf = io.BytesIO()
    _, save_s = _timed(torch.save, {"data": obj}, buf)
    size = buf.tell()
    buf.seek(0)
    _, load_s = _timed(lambda: torch.load(buf, map_location="cpu", weights_only=True))
    return size, save_s, load_s


def bench_exact(hashes: list[str], scored: list[str]) -> dict[str, float]:
    tensor, build_s = _timed(hashes_tensor, hashes)
    size, save_s, load_s = _roundtrip(tensor)
    seen_set, set_s = _timed(tensor_hashes, tensor)
    seen, count_s = _timed(lambda: sum(h in seen_set for h in scored))
    return {"seen": seen, "bytes": size, "build_s": build_s, "save_s": save_s, "load_s": load_s,
            "lookup_set_s": set_s, "count_s": count_s}  # fmt: skip


def _positions(digests: np.ndarray, k: int, m: int) -> np.ndarray:
    """(n, k) bit positions from the digests' 256 bits (double hashing on two 64-bit words)."""
    words = digests.view(np.uint64)  # (n, 4)
    h1, h2 = words[:, 0:1], words[:, 1:2] | np.uint64(1)
    steps = np.arange(k, dtype=np.uint64)[None, :]
    return ((h1 + steps * h2) % np.uint64(m)).astype(np.int64)


def bench_bloom(hashes: list[str], scored: list[str], fpr: float) -> dict[str, float]:
    n = len(hashes)
    k = max(1, round(-math.log2(fpr)))
    m = math.ceil(-n * math.log(fpr) / math.log(2) ** 2)

    def build() -> np.ndarray:
        digests = np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), np.uint8)
        bits = np.zeros(m, dtype=bool)
        bits[_positions(digests.reshape(-1, 32), k, m).ravel()] = True
        return np.packbits(bits)

    packed, build_s = _timed(build)
    size, save_s, load_s = _roundtrip(torch.from_numpy(packed))

    def count() -> int:
        bits = np.unpackbits(packed)[:m].astype(bool)
        digests = np.frombuffer(b"".join(bytes.fromhex(h) for h in scored), np.uint8)
        return int(bits[_positions(digests.reshape(-1, 32), k, m)].all(axis=1).sum())

    seen, count_s = _timed(count)
    return {"seen": seen, "bytes": size, "build_s": build_s, "save_s": save_s, "load_s": load_s,
            "lookup_set_s": 0.0, "count_s": count_s, "k": k,
            "false_seen_expected": fpr * len(scored)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="pretraining images")
    parser.add_argument("--scored", type=int, default=2425, help="scored images (MSTAR TEST)")
    parser.add_argument("--fpr", type=float, default=1e-6, help="Bloom false-positive rate")
    args = parser.parse_args()
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(args.n)]
    # half of the scored images were pretraining images: both counts should say so
    scored = hashes[: args.scored // 2] + [
        hashlib.sha256(f"test-{i}".encode()).hexdigest() for i in range(args.scored // 2)
    ]
    print(f"{args.n} pretraining images, {len(scored)} scored")
    for name, row in (
        ("exact sha256", bench_exact(hashes, scored)),
        (f"bloom fpr={args.fpr:g}", bench_bloom(hashes, scored, args.fpr)),
    ):
        times = ", ".join(f"{k} {v:.2f}" for k, v in row.items() if k.endswith("_s"))
        extra = {k: v for k, v in row.items() if k not in ("bytes",) and not k.endswith("_s")}
        print(f"{name:18s} {row['bytes'] / 1e6:8.2f} MB  {times}  {extra or ''}")


if __name__ == "__main__":
    main()
