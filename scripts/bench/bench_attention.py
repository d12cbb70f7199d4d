"""Feature-extraction throughput of the iRPE ViT: SDPA with an additive bias vs plain softmax.

Measures images/s of ``forward_features`` for the iRPE ViT-B/16 and ViT-Ti/16 at 224 pixels with
``F.scaled_dot_product_attention`` (``fused=True``) and with the plain
``softmax(q k^T / sqrt(d) + bias) v`` formulation, in one run, and prints the ratio. The default
CPU run is short (a few small batches); on a GPU use e.g. ``--device cuda --batch-size 64``.

Usage:
    python scripts/bench/bench_attention.py [--device cuda] [--batches N] [--batch-size B]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from sarfewshot.models import build_backbone

MODELS = {"base": "irpe_vit_base_patch16", "tiny": "irpe_vit_tiny_patch16"}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--models", default="base,tiny", help="comma list of: base, tiny")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=None, help="default 4 (cpu), 64 (cuda)")
    parser.add_argument("--batches", type=int, default=None, help="timed batches: 2 cpu, 20 cuda")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches first")
    return parser.parse_args()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(model, x: torch.Tensor, batches: int, warmup: int) -> tuple[float, torch.Tensor]:
    """Images per second over ``batches`` forward passes (after ``warmup``) and the last output."""
    out = model.forward_features(x)
    for _ in range(max(warmup - 1, 0)):
        out = model.forward_features(x)
    _sync(x.device)
    start = time.perf_counter()
    for _ in range(batches):
        out = model.forward_features(x)
    _sync(x.device)
    return batches * x.shape[0] / (time.perf_counter() - start), out.float()


def bench_model(key: str, args: argparse.Namespace, device: torch.device) -> None:
    """Time one model in both attention modes and print a line each plus the ratio."""
    model = build_backbone("random", arch=MODELS[key], img_size=args.img_size).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, 1, args.img_size, args.img_size, generator=gen).to(device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    rates, outs = {}, {}
    with torch.inference_mode(), autocast:
        for fused in (True, False):
            model.set_fused_attention(fused)
            rates[fused], outs[fused] = time_forward(model, x, args.batches, args.warmup)
    diff = (outs[True] - outs[False]).abs().max().item()
    grid = args.img_size // 16
    label = f"iRPE {MODELS[key]} @{args.img_size} ({grid}x{grid}+1 tokens)"
    print(
        f"{label}  sdpa {rates[True]:9.1f} img/s  plain {rates[False]:9.1f} img/s  "
        f"ratio sdpa/plain {rates[True] / rates[False]:.2f}  max|diff| {diff:.1e}"
    )


def main() -> None:
    """Run the benchmark."""
    args = parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    cuda = device.type == "cuda"
    args.batch_size = args.batch_size or (64 if cuda else 4)
    args.batches = args.batches or (20 if cuda else 2)
    name = (
        torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"device: {name}; torch {torch.__version__}; batch {args.batch_size} x {args.batches}"
        f"{' bf16 autocast' if cuda else ' float32'}"
    )
    for key in filter(None, (k.strip() for k in args.models.split(","))):
        if key not in MODELS:
            raise SystemExit(f"--models: unknown {key!r}; choose from {', '.join(MODELS)}")
        bench_model(key, args, device)


if __name__ == "__main__":
    main()
