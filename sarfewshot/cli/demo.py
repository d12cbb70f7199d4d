"""``sarfewshot demo``: the whole toolkit on the embedded synthetic dataset, on a CPU.

The default folder, ``sarfewshot-demo`` (``sarfewshot-demo-quick`` with ``--quick``), lies
outside ``eval``'s default ``runs/``, so the demo's synthetic rows never mix into real runs.

1. Generate the synthetic SAR-like dataset (``<output>/data``) unless it is there.
2. Pretrain a tiny SAR-JEPA (``configs/pretrain/sarjepa_tiny.yaml``: iRPE ViT, patch 8, width 64,
   2 blocks, 64 px; 50 epochs of the 400 train images, without labels) in ``<output>/pretrain``.
3. Run the evaluation grid: random init vs the pretrained backbone (same architecture), with
   the ``linear``, ``knn`` and ``prototype`` protocols, K = 1, 5, 10, seeds 1-3
   (``<output>/runs``).
4. Print the table, write ``leaderboard.csv`` (and accuracy-vs-shots PNGs when matplotlib is
   installed), write the board page ``<output>/board/index.html`` (when jinja2 is installed)
   and print its path, and print the command that runs the same comparison on real data.

Everything is resumable: a second run reuses the data, the checkpoint and the records.
``--quick`` shrinks every stage (for tests and a first look).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

from sarfewshot.utils.threads import add_threads_argument, apply_threads

DEMO_ARCH = "irpe_vit_micro_patch8"  # the tiny SAR-JEPA's encoder geometry
PRETRAIN_CONFIG = "sarjepa_tiny"
DEFAULT_OUTPUT = "sarfewshot-demo"  # not under `eval`'s default `runs/`


@dataclass(frozen=True)
class DemoPlan:
    """The sizes of one demo run."""

    train_per_class: int
    test_per_class: int
    pretrain_epochs: int
    pretrain_batch: int
    shots: tuple[int, ...]
    seeds: tuple[int, ...]
    img_size: int = 64


QUICK_NOTE = (
    "--quick results sit near chance (10 % for 10 classes) by design: 2 pretraining epochs, "
    "K = 1 and 5, 2 seeds. They check that everything runs; the full demo shows the gap."
)
FULL = DemoPlan(40, 40, 50, 32, (1, 5, 10), (1, 2, 3))  # 50 epochs = 600 steps
QUICK = DemoPlan(8, 6, 2, 8, (1, 5), (1, 2))


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="synthetic data -> tiny SAR-JEPA pretraining -> few-shot grid -> leaderboard",
        description=(
            "The toolkit on the embedded synthetic dataset: generate it, pretrain a tiny SAR-JEPA, "
            "compare it with random init (linear, knn, prototype; K = 1, 5, 10; 3 seeds)."
        ),
    )
    p.add_argument(
        "--output",
        help=f"demo folder (default: {DEFAULT_OUTPUT}, or {DEFAULT_OUTPUT}-quick with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="a much smaller run (tests, first look)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda ...")
    p.add_argument(
        "--pretrain-epochs", type=int, help="pretraining epochs (default: 50, --quick: 2)"
    )
    add_threads_argument(p)
    p.set_defaults(func=run)
    return p


def make_data(out: Path, plan: DemoPlan) -> Path:
    """The synthetic dataset folder (generated on first use, reused afterwards)."""
    from sarfewshot.data.build import build_listing

    root = out / "data"
    options = {"n_train_per_class": plan.train_per_class, "n_test_per_class": plan.test_per_class}
    _, listing = build_listing("synthetic", root, **options)
    print(
        f"data: {len(listing.train)} train / {len(listing.test)} test synthetic chips, "
        f"{len(listing.classnames)} classes in {root}"
    )
    return root


def pretrain_backbone(out: Path, data: Path, plan: DemoPlan, device: str) -> Path:
    """Pretrain the tiny SAR-JEPA on the train images (resumes/reuses ``<out>/pretrain``)."""
    from sarfewshot.pretrain.train import pretrain

    start = time.perf_counter()
    last = out / "pretrain" / "checkpoint-last.pth"
    before = last.stat().st_mtime_ns if last.is_file() else None
    ckpt = pretrain(
        config=PRETRAIN_CONFIG,
        data=[data / "train"],
        output=out / "pretrain",
        epochs=plan.pretrain_epochs,
        batch_size=plan.pretrain_batch,
        img_size=plan.img_size,
        seed=0,
        device=device,
        # a finished (or interrupted) earlier demo run is continued, not redone
        resume=before is not None,
        # event files when the tensorboard package is there; no note about it when it is not
        opts=["TRAIN.TENSORBOARD", str(importlib.util.find_spec("tensorboard") is not None)],
    )
    if before is not None and last.stat().st_mtime_ns == before:
        print(f"pretraining: {ckpt} (finished earlier, reused)")
    else:
        print(f"pretraining: {ckpt} ({time.perf_counter() - start:.0f} s)")
    return Path(ckpt)


def evaluate(out: Path, data: Path, ckpt: Path, plan: DemoPlan, device: str):
    """The grid: random init vs pretrained; linear, knn, prototype."""
    from sarfewshot.engine.grid import BackboneRequest, GridRequest, run_grid

    req = GridRequest(
        backbones=[
            BackboneRequest("random", None, DEMO_ARCH),
            BackboneRequest("sarjepa", str(ckpt), None),
        ],
        datasets=["synthetic"],
        shots=list(plan.shots),
        protocols=["linear", "knn", "prototype"],
        seeds=list(plan.seeds),
        output=out / "runs",
        root=str(data),
        device=device,
        img_size=plan.img_size,
    )
    return run_grid(req)


def write_plots(out: Path) -> list[Path]:
    """Accuracy-vs-shots PNGs next to the CSV, when matplotlib is installed."""
    from sarfewshot.results.aggregate import aggregate_records
    from sarfewshot.results.plots import PlotsUnavailableError, plot_shots
    from sarfewshot.results.records import iter_records

    rows = aggregate_records(list(iter_records([out / "runs"])))
    try:
        return plot_shots(rows, out / "runs")
    except PlotsUnavailableError as exc:
        print(f"(no plots: {exc})")
        return []


def write_board_page(out: Path) -> Path | None:
    """``<out>/board/index.html`` (``sarfewshot board <out>/runs``), when jinja2 is installed."""
    from sarfewshot.cli.board import write_page
    from sarfewshot.cli.records import load_run_records
    from sarfewshot.results.board_page import BoardUnavailableError

    runs = out / "runs"
    args = argparse.Namespace(dirs=[str(runs)], dassl_logs="auto")
    try:
        return write_page(load_run_records(args.dirs), args, out / "board")
    except BoardUnavailableError as exc:
        print(f"(no board page: {exc})")
        return None


def next_steps(ckpt: Path) -> str:
    """The real-data command to run next."""
    return (
        "next, on real data (the release's MSTAR bundle; see `sarfewshot data list`):\n"
        f"  sarfewshot eval --backbone sarjepa --weights {ckpt} --dataset mstar "
        "--root ../MSTAR_DATA --shots 10,20,40 --protocol linear,knn --img-size 64\n"
        "  with a released ViT-B/16 checkpoint on a GPU (the paper's protocols):\n"
        "  sarfewshot eval --backbone sarjepa --weights sarjepa.pth --dataset mstar "
        "--root ../MSTAR_DATA --shots 10,20,40 --protocol finetune,linear"
    )


def run(args: argparse.Namespace) -> int:
    """Run the four stages; exit status 1 when a grid cell failed."""
    plan = QUICK if args.quick else FULL
    if args.pretrain_epochs is not None:
        plan = DemoPlan(**{**plan.__dict__, "pretrain_epochs": int(args.pretrain_epochs)})
    out = Path(args.output or (f"{DEFAULT_OUTPUT}-quick" if args.quick else DEFAULT_OUTPUT))
    start = time.perf_counter()
    apply_threads(getattr(args, "threads", None))
    data = make_data(out, plan)
    ckpt = pretrain_backbone(out, data, plan, args.device)
    summary = evaluate(out, data, ckpt, plan, args.device)
    for path in write_plots(out):
        print(f"plot: {path}")
    page = write_board_page(out)
    if page is not None:
        print(f"board: {page}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    if args.quick:
        print(QUICK_NOTE)
    print(next_steps(ckpt))
    return 1 if summary.failed else 0
