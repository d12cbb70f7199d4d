"""The release's full few-shot grid for one backbone: the toolkit's grid run batched and
``--serial``, against the release-style cost measured per cell and extrapolated.

The release evaluates a backbone on 3 datasets x shots 10/20/40 with 5 fine-tune seeds and
6 linear-probe seeds, one serial run per (dataset, K, seed), the linear probe re-running the
frozen backbone every epoch. On MSTAR-shaped synthetic data (10 classes, 275 train and 243 test
chips per class by default, the MSTAR SOC counts) this script, in one process:

- runs the toolkit's whole grid (``--datasets`` copies of the dataset, each K, 5 fine-tune and
  6 linear seeds) with the batched executor, then again with ``--serial`` (both really run);
- takes the release-style cost per cell: the serial fine-tune cells (seed 2, steady state) and
  linear cells that re-run the frozen backbone every epoch (``--no-feature-cache``, seeds 1-2),
  and extrapolates the release's grid from them for the datasets the grids ran (3 by default,
  the release's count), so the ratio compares like with like.

The last line is ``grid speed-up vs release-style: Z.ZZx (toolkit A s, serial B s,
release-style C s)``. Usage::

    python scripts/bench/bench_release_grid.py --device cuda                  # ViT-B/16, 224 px
    python scripts/bench/bench_release_grid.py --device cpu --arch irpe_vit_micro_patch8 \
        --img-size 64 --train-per-class 100 --test-per-class 100 --epochs 10  # CPU scale
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
    p.add_argument(
        "--datasets", type=int, default=NUM_DATASETS, help="dataset copies the grids really run"
    )
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p.parse_args()


def grid_request(args, root: Path, out: Path, protocols, seeds, serial: bool, cache: bool = True):
    """The grid of ``args`` (arch, shots, epochs, device, image size) on the synthetic ``root``."""
    from sarfewshot.engine.grid import BackboneRequest, GridRequest

    return GridRequest(
        backbones=[BackboneRequest("random", arch=args.arch)],
        datasets=["synthetic"],
        shots=[int(k) for k in args.shots.split(",")],
        protocols=list(protocols),
        seeds=list(seeds) if seeds else None,
        output=out,
        root=str(root),
        device=args.device,
        img_size=args.img_size,
        feature_cache=cache,
        opts=["OPTIM.MAX_EPOCH", str(args.epochs)],
        progress=False,
        serial=serial,
    )


def run_toolkit_grid(args, root: Path, out: Path, serial: bool) -> tuple[float, list[dict]]:
    """Wall seconds of the whole toolkit grid (every dataset copy) and its records."""
    from sarfewshot.engine.grid import run_grid
    from sarfewshot.results.records import iter_records

    start = time.perf_counter()
    records: list[dict] = []
    for d in range(args.datasets):
        folder = out / f"dataset{d}"
        run_grid(grid_request(args, root, folder, ("finetune", "linear"), None, serial), quiet)
        records += list(iter_records([folder]))
    return time.perf_counter() - start, records


def quiet(*_a, **_k) -> None:
    """A printer that prints nothing (the grid's table is not needed here)."""
    return None


def cell_seconds(records: list[dict], protocol: str) -> dict:
    """{(K, seed): total seconds} of one protocol's records (the first dataset copy's)."""
    out: dict = {}
    for r in records:
        if r["protocol"] == protocol:
            out.setdefault((r["shots"], r["seed"]), r["timings"]["total_s"])
    return out


def accuracy_gap(a: list[dict], b: list[dict]) -> float:
    """The largest accuracy difference (points) between the two grids' matching cells."""
    key = lambda r: (r["protocol"], r["shots"], r["seed"])  # noqa: E731
    acc = {key(r): r["metrics"].get("accuracy") for r in b}
    gaps = [abs(r["metrics"]["accuracy"] - acc[key(r)]) for r in a if acc.get(key(r)) is not None]
    return max(gaps, default=0.0)


def main() -> None:
    """Run both grids, measure the release-style cells, print (and optionally save) figures."""
    args = _parse()
    from sarfewshot.datasets.synthetic import generate_synthetic as gen
    from sarfewshot.engine.grid import run_grid
    from sarfewshot.results.records import iter_records

    work = Path(args.work or tempfile.mkdtemp(prefix="sfs_grid_"))
    t0 = time.perf_counter()
    root = gen(work / "data", args.train_per_class, args.test_per_class, progress_bar=False)
    print(f"data: {time.perf_counter() - t0:.1f} s to write {work / 'data'}", flush=True)
    toolkit, batched = run_toolkit_grid(args, root, work / "batched", serial=False)
    print(f"toolkit grid, batched: {toolkit:.1f} s", flush=True)
    serial_s, serial = run_toolkit_grid(args, root, work / "serial", serial=True)
    print(f"toolkit grid, --serial: {serial_s:.1f} s", flush=True)
    rerun = work / "lin_nc"
    run_grid(grid_request(args, root, rerun, ("linear",), (1, 2), True, cache=False), quiet)
    ft = cell_seconds(serial, "finetune")
    lin_nc = cell_seconds(list(iter_records([rerun])), "linear")
    shots = sorted({k for k, _ in ft})
    # Like for like: the release-style cost of the datasets the toolkit's grids really ran.
    release = args.datasets * sum(
        RELEASE_SEEDS["finetune"] * ft[(k, 2)] + RELEASE_SEEDS["linear"] * lin_nc[(k, 2)]
        for k in shots
    )
    figures = _report(args, shots, ft, lin_nc, toolkit, serial_s, release)
    figures["max_accuracy_gap_points"] = accuracy_gap(batched, serial)
    print(
        f"largest batched-vs-serial accuracy gap: {figures['max_accuracy_gap_points']:.3f} points"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"grid speed-up vs release-style: {release / toolkit:.2f}x "
        f"(toolkit {toolkit:.1f} s, serial {serial_s:.1f} s, release-style {release:.1f} s)"
    )


def _report(args, shots, ft, lin_nc, toolkit: float, serial: float, release: float) -> dict:
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    card = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    print(f"device: {card}; arch {args.arch} at {args.img_size} px; {args.epochs} epochs")
    print(f"{'K':>4} {'finetune cell s':>16} {'linear re-run cell s':>21}")
    for k in shots:
        print(f"{k:>4} {ft[(k, 2)]:>16.2f} {lin_nc[(k, 2)]:>21.2f}")
    print(
        f"grids run: {args.datasets} dataset(s) x K {shots} x 5 ft + 6 linear seeds; "
        f"release-style extrapolated to the same {args.datasets}; serial / batched "
        f"{serial / toolkit:.2f}x"
    )
    return {
        "device": card,
        "arch": args.arch,
        "img_size": args.img_size,
        "epochs": args.epochs,
        "datasets_run": args.datasets,
        "cells": {
            f"K{k}": {"finetune_s": ft[(k, 2)], "linear_rerun_s": lin_nc[(k, 2)]} for k in shots
        },
        "toolkit_batched_s": toolkit,
        "toolkit_serial_s": serial,
        "release_style_s": release,
        "speedup": release / toolkit,
    }


if __name__ == "__main__":
    main()
