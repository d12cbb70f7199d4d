"""Benchmark: the summed-area-table GF target against a direct convolution of the same definition.

The direct version convolves the reflect-padded, shifted image with four (2r+1) x (2r+1) half-window
kernels per radius (ones on the r + 1 columns/rows of each half, centre line included), which costs
O(H * W * r^2); the box-sum version costs O(H * W) per radius. Both are timed on the same batch in
one run and the ratio is printed.

Usage:
    python scripts/bench/bench_targets.py [--batch 32] [--size 224] [--repeats 3] [--device cuda]
        [--threads N]

The box-sum version is a few dozen memory-bound tensor operations, each one an OpenMP parallel
region: on a CPU shared with other busy processes every region waits for descheduled threads, so
its time grows far more than the single large convolution's. Compare on a quiet machine, or
pass ``--threads 1``.

Measured (best of 3, one run each):
    2-core shared CPU, 2 threads, quiet:       box 31.7 ms, conv 467.3 ms, 14.8x
    2-core shared CPU, 1 thread, loaded:       box 74 ms,   conv 950 ms,   13x
    H200 host CPU, 16 threads:                 box 10.5 ms, conv 168.8 ms, 16.0x
    NVIDIA H200 (--device cuda, best of 10):   box 1.1 ms,  conv 12.8 ms,  11.6x
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torch.nn.functional as F

from sarfewshot.pretrain.targets import GF_EPS, GF_RADII, patchify, sarjepa_target
from sarfewshot.utils.seeding import torch_generator


def half_kernels(radius: int, device: torch.device) -> torch.Tensor:
    """The four half-window kernels (left, right, top, bottom) stacked as (4, 1, k, k)."""
    k = 2 * radius + 1
    w = torch.zeros(4, 1, k, k, device=device)
    w[0, 0, :, : radius + 1] = 1.0
    w[1, 0, :, radius:] = 1.0
    w[2, 0, : radius + 1, :] = 1.0
    w[3, 0, radius:, :] = 1.0
    return w


def direct_target(x: torch.Tensor, radii=GF_RADII, patch_size: int = 16) -> torch.Tensor:
    """The GF target by direct convolution (the definition, computed the slow way)."""
    maps = []
    for r in radii:
        xp = F.pad(x, (r, r, r, r), mode="reflect") + GF_EPS
        halves = F.conv2d(xp, half_kernels(r, x.device))
        gx = torch.log(halves[:, 0:1] / halves[:, 1:2])
        gy = torch.log(halves[:, 2:3] / halves[:, 3:4])
        maps.append(torch.sqrt(gx * gx + gy * gy))
    return patchify(torch.cat(maps, dim=1), patch_size)


def best_time(fn: Callable[[], torch.Tensor], repeats: int, device: torch.device) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for both (default: torch's default)"
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch_generator(0, "bench_targets")
    x = torch.rand(args.batch, 1, args.size, args.size, generator=gen).to(device)
    with torch.no_grad():
        diff = (sarjepa_target(x) - direct_target(x)).abs().max().item()
        t_box = best_time(lambda: sarjepa_target(x), args.repeats, device)
        t_conv = best_time(lambda: direct_target(x), args.repeats, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, threads: {torch.get_num_threads()}, batch {tuple(x.shape)}")
    print(f"box-sum target:      {t_box * 1000:9.1f} ms")
    print(f"direct convolution:  {t_conv * 1000:9.1f} ms")
    print(f"speed-up (conv/box): {t_conv / t_box:9.1f}x   max abs diff {diff:.2e}")


if __name__ == "__main__":
    main()
