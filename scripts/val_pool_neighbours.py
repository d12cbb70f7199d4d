"""How close each validation-pool chip is to its nearest support candidate, by pool rule.

For every chip of the validation pool (``DATASET.VAL_POOL`` of each TRAIN class), the Pearson
correlation of its pixels, after the centre crop (``INPUT.SAR.CROP``, 128 by default), with the
most correlated chip of the same class outside the pool (the chips K-shot support sets are
drawn from). A value near 1 means the pool holds a near-copy of a possible support image, so a
kNN score on the pool measures recall of near-duplicates rather than generalisation. The
distribution is reported for ``DATASET.VAL_POOL_RULE random`` (over the given split seeds) and
``blocks`` (one pool for every seed).

It also checks how well the collection's file order stands in for azimuth where chips carry
none (the MSTAR JPEG bundle): for each chip, how far (in file-order positions, within its
class) its most correlated other chip lies, against what a random order would give.

usage: python scripts/val_pool_neighbours.py [--root ../shared/data] [--csv FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

from sarfewshot.data.build import build_listing
from sarfewshot.data.io import read_sar_image
from sarfewshot.data.splits import validation_pool
from sarfewshot.data.transforms import center_crop_pad
from sarfewshot.data.valpool import class_order
from sarfewshot.utils.seeding import numpy_rng

HERE = Path(__file__).resolve().parent
COLUMNS = ["rule", "seeds", "pool_chips", "median", "q10", "q90", "share_0.9", "share_0.8"]
ORDER_COLUMNS = ["measure", "within_1", "within_5", "within_10", "median_distance"]


def class_pixels(listing, crop: int) -> dict[int, tuple[list[str], np.ndarray]]:
    """Per label: the chips' paths and their cropped pixels, standardised (rows: chips)."""
    out = {}
    for label in range(len(listing.classnames)):
        items = [d for d in listing.train if d.label == label]
        rows = []
        for d in items:
            x = center_crop_pad(read_sar_image(listing.abspath(d)), crop).astype(np.float64)
            rows.append(((x - x.mean()) / (x.std() or 1.0)).ravel())
        out[label] = ([d.impath for d in items], np.stack(rows))
    return out


def nearest_support(pixels, pool: set[str]) -> list[float]:
    """Per pool chip, its largest correlation with a same-class chip outside the pool."""
    best = []
    for paths, x in pixels.values():
        held = np.array([p in pool for p in paths])
        if held.any() and (~held).any():
            corr = x[held] @ x[~held].T / x.shape[1]
            best += corr.max(axis=1).tolist()
    return best


def summary(rule: str, seeds: str, values: list[float]) -> dict:
    v = np.asarray(values)
    return {
        "rule": rule,
        "seeds": seeds,
        "pool_chips": len(v),
        "median": f"{np.median(v):.3f}",
        "q10": f"{np.quantile(v, 0.1):.3f}",
        "q90": f"{np.quantile(v, 0.9):.3f}",
        "share_0.9": f"{(v > 0.9).mean():.3f}",
        "share_0.8": f"{(v > 0.8).mean():.3f}",
    }


def order_rows(listing, pixels) -> list[dict]:
    """How far in file order each chip's most correlated same-class chip lies."""
    dist, rand = [], []
    rng = numpy_rng(0, "val-pool-neighbours", "order")
    for label, (_, x) in pixels.items():
        items = [d for d in listing.train if d.label == label]
        order, _ = class_order(listing, items)
        rank = np.empty(len(order), dtype=int)
        rank[order] = np.arange(len(order))
        corr = x @ x.T / x.shape[1]
        np.fill_diagonal(corr, -np.inf)
        nn = corr.argmax(axis=1)
        dist += np.abs(rank - rank[nn]).tolist()
        shuffled = rng.permutation(len(order))
        rand += np.abs(shuffled - shuffled[nn]).tolist()
    return [_order_row("file order", dist), _order_row("random order (reference)", rand)]


def _order_row(name: str, d: list[int]) -> dict:
    a = np.asarray(d)
    return {
        "measure": name,
        "within_1": f"{(a <= 1).mean():.3f}",
        "within_5": f"{(a <= 5).mean():.3f}",
        "within_10": f"{(a <= 10).mean():.3f}",
        "median_distance": f"{np.median(a):.0f}",
    }


def _csv(rows: list[dict], columns: list[str]) -> str:
    """The study report's CSV writer (one format for every table of the study doc)."""
    spec = importlib.util.spec_from_file_location(
        "mstar_study_report", HERE / "mstar_study_report.py"
    )
    report = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = report  # its dataclass looks its module up by name
    spec.loader.exec_module(report)
    return report.csv_text(rows, columns)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data", help="folder holding MSTAR_SOC/")
    p.add_argument("--dataset", default="mstar")
    p.add_argument("--val-pool", type=float, default=0.2)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--seeds", default="1,2,3,4,5", help="split seeds of the random rule")
    p.add_argument("--csv", help="write the pool table here")
    p.add_argument("--order-csv", help="write the file-order check here")
    args = p.parse_args(argv)
    ds, listing = build_listing(args.dataset, args.root)
    name = getattr(ds, "split_name", args.dataset)
    pixels = class_pixels(listing, args.crop)
    seeds = [int(s) for s in args.seeds.split(",")]
    random_best = []
    for seed in seeds:
        pool = {d.impath for d in validation_pool(listing, name, args.val_pool, "random", seed)}
        random_best += nearest_support(pixels, pool)
    blocks = {d.impath for d in validation_pool(listing, name, args.val_pool, "blocks")}
    rows = [
        summary("random", args.seeds, random_best),
        summary("blocks", "any", nearest_support(pixels, blocks)),
    ]
    order = order_rows(listing, pixels)
    text = _csv(rows, COLUMNS)
    print(text + "\n" + _csv(order, ORDER_COLUMNS), end="")
    if args.csv:
        Path(args.csv).write_text(text)
    if args.order_csv:
        Path(args.order_csv).write_text(_csv(order, ORDER_COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
