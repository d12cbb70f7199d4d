"""Benchmark: pretraining throughput (images/s per training step) of a method's encoder+predictor.

One step = target computation, forward of encoder and predictor, backward, AdamW step, on random
images already on the device (data loading excluded). bf16 autocast on CUDA, float32 on CPU.
Prints the achieved TFLOP/s from ``torch.utils.flop_counter`` (training FLOPs per image counted
once) and, on a GPU of ``sarfewshot.pretrain.flops.BF16_PEAK_TFLOPS``, the MFU.

Usage:
    python scripts/bench/bench_pretrain.py                       # tiny SAR-JEPA on the CPU
    python scripts/bench/bench_pretrain.py --arch base --device cuda --batch 75
    python scripts/bench/bench_pretrain.py --method mae --arch base --device cuda

Measured on one NVIDIA H200 (torch 2.11, bf16 autocast, ViT-B/16 geometry, 224 px, batch 75,
mean of 10 steps after 3 warm-up steps):
    sarjepa  55.8-57.7 ms/step, 1300-1344 images/s, peak 10.7 GiB
    lomar    62.1 ms/step, 1207 images/s, peak 10.2 GiB
    mae      42.3 ms/step, 1774 images/s, peak 5.5 GiB (encoder on 25 % of the tokens)
    ijepa    88.3 ms/step,  849 images/s, peak 9.8 GiB (291 ms before cuDNN attention was
             bypassed for its changing sequence lengths)
Tiny SAR-JEPA on the 2-core CPU of the development machine (64 px, batch 8): about 700 images/s.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from sarfewshot.configs import config_path
from sarfewshot.pretrain.config import setup_pretrain_cfg
from sarfewshot.pretrain.flops import throughput_line, train_flops_per_image
from sarfewshot.pretrain.methods import build_pretrain_model
from sarfewshot.utils.seeding import torch_generator

# ViT-B/16 geometry of the release (spec section 4), for methods without a ViT-B preset
BASE = {
    "INPUT": {"SIZE": 224},
    "MODEL": {
        "PATCH_SIZE": 16,
        "EMBED_DIM": 768,
        "DEPTH": 12,
        "NUM_HEADS": 12,
        "PRED_DIM": 512,
        "PRED_DEPTH": 8,
        "PRED_HEADS": 16,
    },
    "MASK": {"WINDOW": 7},
}


def build_cfg(method: str, arch: str):
    """Tiny preset of ``method``, or its ViT-B/16 release geometry (``arch="base"``)."""
    overrides = {"METHOD": method}
    if arch == "base":
        overrides.update(BASE)
        if method in ("mae", "ijepa"):
            overrides["MASK"] = {}
    return setup_pretrain_cfg(config_path("pretrain", f"{method}_tiny.yaml"), overrides=overrides)


def step_fn(model, opt, x, device, amp: bool, losses: list | None = None):
    """One training step; masks from a fixed seeded generator. ``model`` may be a
    ``torch.compile`` wrapper; ``losses`` (when given) collects each step's loss tensor."""
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()

    def step(i: int) -> None:
        with ctx:
            out = model(x, torch_generator(0, "bench", i))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        if losses is not None:
            losses.append(out["loss"].detach())

    return step


def timed(step, steps: int, warmup: int, device: torch.device) -> float:
    """Mean seconds per step after ``warmup`` untimed steps."""
    for i in range(warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="sarjepa")
    parser.add_argument("--arch", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--batch", type=int, default=None, help="default 8 tiny, 75 base")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA too")
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = build_cfg(args.method, args.arch)
    batch = args.batch or (75 if args.arch == "base" else 8)
    model = build_pretrain_model(cfg).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    size = cfg.INPUT.SIZE
    x = torch.rand(batch, 1, size, size, generator=torch_generator(0, "bench-x")).to(device)
    amp = device.type == "cuda" and not args.no_amp
    sec = timed(step_fn(model, opt, x, device, amp), args.steps, args.warmup, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"device: {name} | method {args.method} | arch {args.arch} ({params:.1f} M params) | "
        f"{size}px batch {batch} | {'bf16' if amp else 'fp32'} | threads {torch.get_num_threads()}"
    )
    print(f"step {sec * 1000:.1f} ms | {batch / sec:.1f} images/s per training step")
    flops = train_flops_per_image(cfg, model, device)
    print(f"achieved {throughput_line(flops, batch / sec, device)}")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
