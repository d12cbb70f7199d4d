"""Cost of the release's full few-shot grid for one backbone: measured cells, extrapolated grid.

The release evaluates a backbone on 3 datasets x shots 10/20/40 with 5 fine-tune seeds and
6 linear-probe seeds, one serial run per (dataset, K, seed), each re-reading its images and, for
the linear probe, re-running the frozen backbone every epoch. This script measures, in one run
and on the same MSTAR-shaped synthetic data (10 classes, 275 train and 243 test chips per class
by default, the MSTAR SOC counts), the per-cell cost of

- a fine-tune cell (seed 1 and 2),
- a linear cell on cached features (seed 1 pays the feature extraction, seed 2 does not),
- a linear cell that re-runs the frozen backbone every epoch (``--no-feature-cache``, the
  release's computation),

then extrapolates both ways of running the full grid (all three datasets taken as MSTAR-sized)
and prints the ratio. Usage::

    python scripts/bench/bench_release_grid.py --device cuda                  # ViT-B/16, 224 px
    python scripts/bench/bench_release_grid.py --arch irpe_vit_micro_patch8 --img-size 32 \
        --train-per-class 30 --test-per-class 30 --epochs 5                   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

RELEASE_SHOTS = (10, 20, 40)
RELEASE_SEEDS = {"finetune": 5, "linear": 6}
NUM_DATASETS = 3


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--arch", default="irpe_vit_base_patch16")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--train-per-class", type=int, default=275)
    p.add_argument("--test-per-class", type=int, default=243)
    p.add_argument("--shots", default="10,20,40")
    p.add_argument("--epochs", type=int, default=40, help="OPTIM.MAX_EPOCH (release: 40)")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p.parse_args()


def _run(args: argparse.Namespace, root: Path, out: Path, protocol: str, cache: bool) -> dict:
    """Run one protocol over shots x seeds 1-2 and return {(K, seed): total seconds}."""
    from sarfewshot.engine.grid import BackboneRequest, GridRequest, run_grid
    from sarfewshot.results.records import iter_records

    req = GridRequest(
        backbones=[BackboneRequest("random", arch=args.arch)],
        datasets=["synthetic"],
        shots=[int(k) for k in args.shots.split(",")],
        protocols=[protocol],
        seeds=[1, 2],
        output=out,
        root=str(root),
        device=args.device,
        img_size=args.img_size,
        feature_cache=cache,
        opts=["OPTIM.MAX_EPOCH", str(args.epochs)],
        progress=False,
    )
    run_grid(req, printer=lambda *a, **k: None)
    return {(r["shots"], r["seed"]): r["timings"]["total_s"] for r in iter_records([out])}


def _grid_seconds(cell_s: dict, seeds: int, shots: list[int], first_extra: float = 0.0) -> float:
    """Seconds for ``seeds`` seeds of every K on one dataset, from seed-2 (steady) cell costs."""
    return sum(cell_s[(k, 2)] * seeds for k in shots) + first_extra


def main() -> None:
    """Measure the cells, extrapolate the grid, print (and optionally save) the figures."""
    args = _parse()
    from sarfewshot.datasets.synthetic import generate_synthetic as gen

    work = Path(args.work or tempfile.mkdtemp(prefix="sfs_grid_"))
    t0 = time.perf_counter()
    root = gen(work / "data", args.train_per_class, args.test_per_class, progress_bar=False)
    print(f"data: {time.perf_counter() - t0:.1f} s to write {work / 'data'}")
    ft = _run(args, root, work / "ft", "finetune", True)
    lin = _run(args, root, work / "lin", "linear", True)
    lin_nc = _run(args, root, work / "lin_nc", "linear", False)
    shots = sorted({k for k, _ in ft})
    extraction = sum(lin[(k, 1)] - lin[(k, 2)] for k in shots[:1])  # features: once per dataset
    ours = NUM_DATASETS * (
        _grid_seconds(ft, RELEASE_SEEDS["finetune"], shots)
        + _grid_seconds(lin, RELEASE_SEEDS["linear"], shots, extraction)
    )
    release = NUM_DATASETS * (
        _grid_seconds(ft, RELEASE_SEEDS["finetune"], shots)
        + _grid_seconds(lin_nc, RELEASE_SEEDS["linear"], shots)
    )
    figures = _report(args, shots, ft, lin, lin_nc, ours, release)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


def _report(args, shots, ft, lin, lin_nc, ours: float, release: float) -> dict:
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    card = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    print(f"device: {card}; arch {args.arch} at {args.img_size} px; {args.epochs} epochs")
    print(f"{'K':>4} {'finetune s':>11} {'linear cached s':>16} {'linear re-run s':>16}")
    for k in shots:
        print(f"{k:>4} {ft[(k, 2)]:>11.2f} {lin[(k, 2)]:>16.2f} {lin_nc[(k, 2)]:>16.2f}")
    print(
        f"full release grid ({NUM_DATASETS} datasets x K {RELEASE_SHOTS} x 5 ft + 6 linear "
        f"seeds): toolkit {ours / 60:.1f} min, release-style serial {release / 60:.1f} min, "
        f"ratio {release / ours:.2f}x"
    )
    return {
        "device": card,
        "arch": args.arch,
        "img_size": args.img_size,
        "epochs": args.epochs,
        "cells": {
            f"K{k}": {
                "finetune_s": ft[(k, 2)],
                "linear_cached_s": lin[(k, 2)],
                "linear_rerun_s": lin_nc[(k, 2)],
            }
            for k in shots
        },
        "grid_toolkit_min": ours / 60,
        "grid_release_style_min": release / 60,
        "ratio": release / ours,
    }


if __name__ == "__main__":
    main()
