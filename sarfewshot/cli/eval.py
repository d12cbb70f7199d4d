"""``sarfewshot eval``: run the few-shot evaluation grid and print the aggregated table.

Every (backbone, dataset, protocol, K, seed) cell writes one record under ``<output>/records``;
cells with a record are skipped (``--force`` recomputes), so an interrupted grid resumes with
the same command. At the end the table of this command's cells (of every shard, when sharded)
is printed, and the leaderboard of every record under the run folder is written to
``<output>/leaderboard.csv`` (``sarfewshot leaderboard DIR`` prints that whole table).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sarfewshot.errors import ConfigError
from sarfewshot.utils.intlist import parse_ints
from sarfewshot.utils.threads import add_threads_argument, apply_threads

EPILOG = """\
examples:
  sarfewshot eval --backbone sarjepa --weights sarjepa.pth --dataset mstar --root DATA \\
      --shots 10,20,40 --protocol finetune,linear
  sarfewshot eval --backbone random --arch irpe_vit_micro_patch8 --img-size 32 \\
      --dataset mstar --root DATA --shots 1,5 --protocol knn,prototype --seeds 1-3
  sarfewshot eval ... --shard 2/4            # the 2nd quarter of the cells (or SLURM arrays)
  sarfewshot eval ... --launcher slurm --array 4   # 4 Slurm jobs, job i runs --shard i/4
  sarfewshot eval ... OPTIM.MAX_EPOCH 10     # trailing KEY VALUE config overrides
  sarfewshot eval ... --precision bf16       # bfloat16 autocast (default fp32, as released)
  sarfewshot eval ... --dataset atrnet_star --conditions all \\
      DATASET.SAR.ATRNET_SETTING eoc_depression  # one training, a record per condition
  sarfewshot eval ... --shots 1,5,10,all     # all: the whole train pool

default seeds: 1-5 for finetune, 1-6 for linear (the release's counts), 1-5 otherwise.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand."""
    p = sub.add_parser(
        "eval",
        help="run the K-shot evaluation grid (backbones x datasets x protocols x K x seeds)",
        description=(
            "Run the few-shot evaluation grid (every backbone x dataset x protocol x K x seed "
            "cell, skipping finished ones) and print the aggregated table."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_grid_arguments(p)
    add_threads_argument(p)
    from sarfewshot.launch import add_launcher_arguments

    add_launcher_arguments(p, pretrain=False)
    p.set_defaults(func=run)
    return p


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    """The grid's flags (shared with scripts that wrap the grid)."""
    _add_cell_arguments(p)
    _add_scoring_arguments(p)
    _add_execution_arguments(p)


def _add_cell_arguments(p: argparse.ArgumentParser) -> None:
    """Which cells: backbones, datasets, K, protocols and seeds."""
    p.add_argument("--backbone", required=True, help="backbone name(s), comma-separated")
    p.add_argument(
        "--weights",
        help="checkpoint(s): one per backbone, comma-separated in --backbone order "
        "(empty entries: the default), or NAME=PATH pairs",
    )
    p.add_argument("--arch", help="architecture override(s), same rules as --weights")
    p.add_argument("--dataset", required=True, help="dataset name(s), comma-separated")
    p.add_argument("--root", help="dataset root folder (default: DATASET.ROOT of the config)")
    p.add_argument(
        "--shots", required=True, help="K values, e.g. 1,5,10; all = the whole train pool"
    )
    p.add_argument(
        "--protocol",
        default="finetune,linear",
        help="protocol(s): finetune, linear, lora, partial, logreg, knn, prototype "
        "(default: finetune,linear)",
    )
    p.add_argument("--seeds", help="seeds, e.g. 1,2,3 or 1-5 (default: per protocol)")


def _add_scoring_arguments(p: argparse.ArgumentParser) -> None:
    """Where and how cells run and are scored: output, device, input size, precision, test sets."""
    p.add_argument("--output", default="runs", help="run folder (default: runs)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument(
        "--img-size",
        type=int,
        metavar="PX",
        help="network input size in pixels (default: 224, every protocol preset's INPUT.SIZE; "
        "the preset's crop stays); 64 gives a ViT-B/16 16 patches instead of 196, much faster on "
        "a CPU",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        help="numeric precision of fine-tuning, testing and feature extraction (config "
        "MODEL.PRECISION, default fp32 as the release ran); bf16 runs them under bfloat16 "
        "autocast on the device in use, CPU included. Part of the config hash: bf16 and fp32 "
        "cells never merge",
    )
    p.add_argument(
        "--eval-split",
        choices=("test", "val"),
        help="images to score (config TEST.SPLIT, default test): val scores the validation pool "
        "(DATASET.VAL_POOL of TRAIN, never a support set) for choices such as a learning rate, "
        "without reading TEST; its cells are named DATASET:val and never merge with TEST cells",
    )
    p.add_argument(
        "--conditions",
        metavar="LIST",
        help="score every cell on named test sets (operating conditions) after ONE training: "
        "'all' or a comma list, e.g. id,depression_45 (sarfewshot data list names each "
        "setting's conditions; id is the in-distribution test set). One record per condition, "
        "keyed by setting and condition, all with the cell's split file",
    )


def _add_execution_arguments(p: argparse.ArgumentParser) -> None:
    """Caches, recomputation, logs, the executor, config files, shards and trailing options."""
    p.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="linear re-runs the frozen backbone every epoch; no features are cached on disk",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="recompute the command's cells that have a record (also cells computed on another "
        "version of the dataset folder), rebuilding the image and feature caches they use and "
        "redrawing split files drawn from an older listing",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="trained cells (finetune, linear) write per-epoch loss and LR TensorBoard event "
        "files under OUTPUT/tensorboard/ (needs the tensorboard extra)",
    )
    executor = p.add_mutually_exclusive_group()
    executor.add_argument(
        "--serial",
        dest="serial",
        action="store_const",
        const=True,
        help="run one cell at a time (the reference path; the default on a CPU)",
    )
    executor.add_argument(
        "--batched",
        dest="serial",
        action="store_const",
        const=False,
        help="train the seeds of each (backbone, dataset, finetune/linear, K) group together as "
        "one stacked model (the default on CUDA)",
    )
    p.add_argument("--config", help="a CoOp-style YAML merged over every protocol's preset")
    p.add_argument("--shard", help="run the i-th of n shards of the cells, e.g. 1/4")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="trailing KEY VALUE config overrides")


def split_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "", "c"]`` (None -> [])."""
    if text is None:
        return []
    return [part.strip() for part in str(text).split(",")]


def parse_shots(text: str) -> list[int]:
    """``--shots``: integers and ranges as :func:`parse_ints`, plus ``all`` (the whole train
    pool, K = -1 in keys and split files ``shot_all``)."""
    from sarfewshot.engine.grid.plan import ALL_SHOTS

    parts = split_list(text)
    ints = ",".join(p for p in parts if p and p.lower() != "all")
    out = parse_ints(ints, "--shots") if ints else []
    if any(p.lower() == "all" for p in parts):
        out.append(ALL_SHOTS)
    if not out:
        raise ConfigError(f"--shots {text!r}: give K values such as 1,5,10 (or all)")
    return out


def _values(text: str, backbones: list[str]) -> list[str]:
    # Arch specs contain commas (irpe:patch=8,dim=64,...): with one backbone the whole text is
    # its value; otherwise ';' separates values, or a comma piece such as "dim=64" that is not
    # a backbone's NAME=VALUE continues the spec before it.
    if ";" in text:
        return [v.strip() for v in text.split(";")]
    if len(backbones) == 1:
        return [text.strip()]
    out: list[str] = []
    for piece in split_list(text):
        key, eq, _ = piece.partition("=")
        if out and ":" in out[-1] and eq and ":" not in piece and key not in backbones:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def per_backbone(text: str | None, backbones: list[str], flag: str) -> list[str | None]:
    """One value per backbone from ``--weights`` / ``--arch``.

    Accepts one value per backbone in ``--backbone`` order (comma- or ';'-separated, empty for
    the default) or ``NAME=VALUE`` pairs; with a single backbone the whole text is its value.
    """
    if not text or not text.strip():
        return [None] * len(backbones)
    values = _values(text, backbones)
    pairs = [v.partition("=") for v in values]
    named = [bool(eq) and k in backbones for k, eq, _ in pairs]
    if any(named):
        if not all(named):
            bad = [v for v, ok in zip(values, named) if not ok]
            raise ConfigError(f"{flag}: {bad} not NAME=VALUE pairs of --backbone {backbones}")
        given = {k: v for k, _, v in pairs}
        return [given.get(b) or None for b in backbones]
    if len(values) != len(backbones):
        raise ConfigError(
            f"{flag} has {len(values)} value(s) for {len(backbones)} backbones {backbones}; give "
            "one per backbone (separated by ',' or, for arch specs, ';') or NAME=VALUE pairs"
        )
    return [v or None for v in values]


def request_from_args(args: argparse.Namespace):
    """Turn parsed ``eval`` flags into a :class:`~sarfewshot.engine.grid.GridRequest`."""
    from sarfewshot.engine.grid import BackboneRequest, GridRequest, parse_shard

    names = [b for b in split_list(args.backbone) if b]
    weights = per_backbone(args.weights, names, "--weights")
    archs = per_backbone(args.arch, names, "--arch")
    opts = list(args.opts or [])
    if opts and opts[0] == "--":
        opts = opts[1:]
    # flags go before the trailing KEY VALUE options, which are merged last
    if getattr(args, "eval_split", None):
        opts = ["TEST.SPLIT", args.eval_split, *opts]
    if getattr(args, "precision", None):
        opts = ["MODEL.PRECISION", args.precision, *opts]
    return GridRequest(
        backbones=[BackboneRequest(n, w, a) for n, w, a in zip(names, weights, archs)],
        datasets=[d for d in split_list(args.dataset) if d],
        shots=parse_shots(args.shots),
        protocols=[p for p in split_list(args.protocol) if p],
        seeds=parse_ints(args.seeds, "--seeds") if args.seeds else None,
        output=Path(args.output),
        root=args.root,
        device=args.device,
        img_size=args.img_size,
        feature_cache=not args.no_feature_cache,
        force=bool(args.force),
        config_file=args.config,
        opts=opts,
        shard=parse_shard(args.shard) if args.shard else None,
        tensorboard=bool(getattr(args, "tensorboard", False)),
        serial=getattr(args, "serial", None),
        conditions=_conditions(getattr(args, "conditions", None)),
    )


def _conditions(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c for c in split_list(text) if c]
    if not names:
        raise ConfigError(f"--conditions {text!r}: give 'all' or condition names")
    return names


def run(args: argparse.Namespace) -> int:
    """Run the grid; exit status 1 when a cell failed (its failure is recorded)."""
    from sarfewshot.engine.grid import run_grid

    if getattr(args, "launcher", None):
        from sarfewshot.launch import launch_eval

        return launch_eval(args, request_from_args(args))
    if getattr(args, "array", None):
        raise ConfigError("--array needs --launcher slurm or --launcher local")
    apply_threads(getattr(args, "threads", None))
    summary = run_grid(request_from_args(args))
    return 1 if summary.failed else 0
