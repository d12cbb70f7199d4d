"""How far a dataset's chips are, in dB, from the Sentinel-1 statistics torchgeo's weights saw.

For each dataset, every listed chip (train pool and test set) goes through the toolkit's own
preprocessing (the dataset's crop, no resize: native pixels), then the dB mapping of the
``torchgeo:`` dB members, ``20 log10(max(x, 1e-3))``. Printed per dataset: the dB quantiles over
all pixels, the spread of per-chip medians, and per polarisation channel of the member's
normalisation the mean z-score and the share of pixels with |z| > 3, for the fixed mapping and for
``MODEL.BACKBONE.INPUT_CALIBRATION median``.

    python scripts/sar_db_stats.py                          # ../shared/data: mstar, mstar_raw
    python scripts/sar_db_stats.py --dataset mstar=DIR --member ResNet50_Weights.SENTINEL1_ALL_MOCO
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sarfewshot.data.build import build_listing
from sarfewshot.data.cache import as_float, load_image_tensor
from sarfewshot.data.transforms import PreprocessSpec
from sarfewshot.models.zoo.torchgeo import DB_FLOOR, input_mapping, torchgeo_weights

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEFAULT_DATASETS = (f"mstar={SHARED / 'MSTAR_SOC'}", f"mstar_raw={SHARED / 'mstar_raw'}")


def chips_db(name: str, root: str) -> torch.Tensor:
    """Every chip of the dataset at its crop, in dB: ``(N, S, S)``."""
    dataset, listing = build_listing(name, root)
    crop = int(getattr(dataset, "crop_size", None) or 128)
    paths = [listing.abspath(d) for d in (*listing.train, *listing.test)]
    spec = PreprocessSpec(crop=crop, size=crop)
    x = as_float(load_image_tensor(paths, spec, progress=False))[:, 0]
    return 20.0 * torch.log10(x.clamp_min(10 ** (DB_FLOOR / 20)))


def z_summary(db: torch.Tensor, mean: float, std: float) -> str:
    z = (db - mean) / std
    return f"mean z {z.mean():+.2f}, |z|>3 {100 * (z.abs() > 3).float().mean():.1f} %"


def report(name: str, db: torch.Tensor, bands: list[str], mapping) -> None:
    flat = db.flatten()
    q = torch.quantile(
        flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]],
        torch.tensor([0.05, 0.5, 0.95]),
    )
    medians = db.flatten(1).median(dim=1).values
    floor = 100 * (flat <= DB_FLOOR + 1e-4).float().mean()
    print(f"## {name}: {db.shape[0]} chips of {db.shape[1]}x{db.shape[2]}")
    print(
        f"dB over all pixels: p5 {q[0]:.1f}, median {q[1]:.1f}, p95 {q[2]:.1f}, mean "
        f"{flat.mean():.1f}; at the -60 dB floor {floor:.1f} %"
    )
    print(
        f"per-chip median dB: {medians.min():.1f} .. {medians.max():.1f} "
        f"(mean {medians.mean():.1f})"
    )
    centred = db - medians.view(-1, 1, 1)
    for band, mean, std in zip(bands, mapping.mean, mapping.std):
        print(
            f"- {band} (mean {mean:g} dB, std {std:g}): fixed mapping {z_summary(db, mean, std)}; "
            f"median calibration {z_summary(centred + mean, mean, std)}; "
            f"median offset from the mean {medians.median() - mean:+.1f} dB"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        action="append",
        metavar="NAME=ROOT",
        help="dataset and root (repeatable; default: the MSTAR data of ../shared)",
    )
    parser.add_argument(
        "--member",
        default="ResNet50_Weights.SENTINEL1_ALL_MOCO",
        help="a dB torchgeo member whose normalisation is compared against",
    )
    args = parser.parse_args()
    name = f"torchgeo:{args.member}"
    weights = torchgeo_weights(name)
    mapping = input_mapping(name, weights)
    bands = list(weights.meta["bands"])
    print(
        f"member {name}: {mapping.kind}, bands {bands}, mean {list(mapping.mean)}, "
        f"std {list(mapping.std)}\n"
    )
    for item in args.dataset or DEFAULT_DATASETS:
        dataset, _, root = item.partition("=")
        if not Path(root).is_dir():
            print(f"## {dataset}: skipped, no folder {root}\n")
            continue
        report(dataset, chips_db(dataset, root), bands, mapping)


if __name__ == "__main__":
    main()
