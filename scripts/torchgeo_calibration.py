"""What ``MODEL.BACKBONE.INPUT_CALIBRATION median`` changes for a torchgeo dB member on MSTAR.

Runs one ``sarfewshot eval`` grid twice on the same weights, dataset, splits and seeds: once
with the fixed dB mapping (``none``, the default) and once with the median calibration, each in
its own output folder (their config hashes differ, so their cells never merge), then prints the
two tables side by side with the per-(protocol, K) difference of mean accuracy.

Weights: ``--weights FILE`` (e.g. torchgeo's own file of the member, saved from its cache);
without it a seeded random init of the member's network is saved under ``OUT`` and used, so the
measured effect is that of random-init weights.

    OMP_NUM_THREADS=1 python scripts/torchgeo_calibration.py --img-size 64 --out /tmp/tgcal
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from sarfewshot.cli.main import main as sarfewshot
from sarfewshot.models.zoo.torchgeo import torchgeo_weights

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def random_weights(member: str, out: Path, seed: int) -> Path:
    """A seeded random init of the member's network, saved as a plain state dict."""
    import torchgeo.models as tgm

    weights = torchgeo_weights(f"torchgeo:{member}")
    torch.manual_seed(seed)
    model = tgm.get_model(weights.meta["model"], in_chans=int(weights.meta["in_chans"]))
    path = out / f"{member.replace('.', '_')}_random_seed{seed}.pth"
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def read_table(folder: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """(protocol, K) -> (mean, population std) of the run's leaderboard."""
    with open(folder / "leaderboard.csv", newline="") as handle:
        return {
            (row["protocol"], int(row["shots"])): (float(row["acc_mean"]), float(row["acc_std"]))
            for row in csv.DictReader(handle)
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--member", default="ResNet50_Weights.SENTINEL1_ALL_MOCO")
    parser.add_argument("--weights", default=None, help="weights file (default: random init)")
    parser.add_argument("--root", default=str(SHARED / "MSTAR_SOC"))
    parser.add_argument("--dataset", default="mstar")
    parser.add_argument("--shots", default="1,2,5,10,20")
    parser.add_argument("--protocol", default="knn,linear")
    parser.add_argument("--seeds", default="1-5")
    parser.add_argument("--img-size", default="64")
    parser.add_argument("--out", default="runs/torchgeo_calibration")
    args = parser.parse_args()
    out = Path(args.out)
    weights = args.weights or str(random_weights(args.member, out, seed=0))
    common = ["eval", "--backbone", f"torchgeo:{args.member}", "--weights", weights]
    common += ["--dataset", args.dataset, "--root", args.root, "--shots", args.shots]
    common += ["--protocol", args.protocol, "--seeds", args.seeds, "--img-size", args.img_size]
    common += ["--device", "cpu"]
    tables = {}
    for calibration in ("none", "median"):
        folder = out / calibration
        code = sarfewshot(
            [*common, "--output", str(folder)]
            + (["MODEL.BACKBONE.INPUT_CALIBRATION", calibration] if calibration != "none" else [])
        )
        if code not in (0, 1):
            raise SystemExit(code)
        tables[calibration] = read_table(folder)
    print(f"\n{args.member} on {args.dataset}, img {args.img_size}, weights {weights}")
    print("| protocol | K | fixed dB mapping | median calibration | difference |")
    print("|---|---|---|---|---|")
    for key in sorted(tables["none"]):
        (a, sa), (b, sb) = tables["none"][key], tables["median"].get(key, (float("nan"),) * 2)
        print(f"| {key[0]} | {key[1]} | {a:.2f} ± {sa:.2f} | {b:.2f} ± {sb:.2f} | {b - a:+.2f} |")


if __name__ == "__main__":
    main()
