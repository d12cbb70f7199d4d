"""Benchmark: weak scaling of pretraining on the CPU (gloo), 1, 2 and 4 processes.

Each process keeps the same batch (weak scaling); the run is ``torchrun --standalone
--nproc-per-node N -m sarfewshot pretrain`` of a tiny preset on synthetic chips, one thread
per process. Images/s is rank 0's ``throughput:`` line (every process's images, training loop
only, start-up excluded); efficiency = images/s at N / (N x images/s at 1).

Usage:
    python scripts/bench/bench_scaling.py [--procs 1,2,4] [--steps 20] [--batch 8]
        [--config sarjepa_tiny]

On a machine with fewer cores than processes the processes share cores, and the efficiency
measures that sharing rather than the interconnect.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(procs: int, chips: Path, out: Path, args: argparse.Namespace) -> float:
    """Images/s of one launch with ``procs`` processes."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={procs}", "-m", "sarfewshot", "pretrain", "--config", args.config,
        "--data", str(chips), "--output", str(out), "--batch-size", str(args.batch),
        "--max-steps", str(args.steps), "--workers", "0", "TRAIN.TENSORBOARD", "False",
        "OPTIM.EPOCHS", "1000", "TRAIN.LOG_EVERY", "1000",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SARFEWSHOT_NO_PROGRESS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    match = re.search(r"throughput: ([0-9.]+) images/s", proc.stdout)
    if not match:
        raise SystemExit(f"no throughput line in:\n{proc.stdout}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", default="1,2,4")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8, help="images per process and step")
    parser.add_argument("--config", default="sarjepa_tiny")
    args = parser.parse_args()
    counts = [int(p) for p in args.procs.split(",")]
    sys.path.insert(0, str(REPO))
    from tests.pretrain.synthetic_sar import write_chips

    with tempfile.TemporaryDirectory(prefix="sfs_scaling_") as tmp:
        chips = Path(tmp) / "chips"
        write_chips(chips, n=max(counts) * args.batch * 2, size=72)
        print(f"cores: {os.cpu_count()} | {args.config} | batch {args.batch} per process | "
              f"{args.steps} steps | gloo, 1 thread per process")  # fmt: skip
        print(f"{'processes':>9} {'images/s':>9} {'efficiency':>10}")
        base = None
        for n in counts:
            rate = run(n, chips, Path(tmp) / f"out{n}", args)
            base = base or rate / n
            print(f"{n:9d} {rate:9.1f} {rate / (n * base):10.2f}")


if __name__ == "__main__":
    main()
