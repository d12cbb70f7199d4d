"""`sarfewshot pretrain`: self-supervised pretraining (SAR-JEPA and its baselines).

Runs as one process, or under ``torchrun --nproc_per_node=N -m sarfewshot pretrain ...`` (and
multi-node through torchrun's environment) with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import os
import re

EPILOG = """\
examples:
  sarfewshot pretrain --method sarjepa --data /data/MSAR /data/SAR-Ship \\
      --config configs/pretrain/sarjepa_vit_b16.yaml --output runs/sarjepa
  sarfewshot pretrain --config sarjepa_tiny --data chips/ --output runs/tiny --max-steps 30
  sarfewshot pretrain --config sarjepa_tiny --data chips/ --output runs/tiny --resume
  torchrun --nproc_per_node=4 -m sarfewshot pretrain --config sarjepa_vit_b16 --data /data/sar

trailing KEY VALUE pairs override config keys, e.g. OPTIM.CLIP_GRAD 3.0 OPTIM.ACCUM_ITER 2
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `pretrain` subcommand."""
    parser = sub.add_parser(
        "pretrain",
        help="pretrain a backbone (SAR-JEPA, MAE, LoMaR, I-JEPA, HOG, ...) on unlabelled images",
        description="Self-supervised pretraining on every image under the --data folders.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--method", help="pretraining method (default: the config's, sarjepa)")
    parser.add_argument("--data", nargs="+", metavar="DIR", help="folders of unlabelled images")
    parser.add_argument(
        "--config", help="YAML config, or a bundled preset name (e.g. sarjepa_vit_b16)"
    )
    parser.add_argument("--output", metavar="DIR", help="output folder (OUTPUT_DIR)")
    parser.add_argument("--epochs", type=int, help="epochs (OPTIM.EPOCHS)")
    parser.add_argument(
        "--max-steps", type=int, help="stop after N optimizer steps (the schedule is unchanged)"
    )
    parser.add_argument("--batch-size", type=int, help="images per process and micro-batch")
    parser.add_argument("--img-size", type=int, help="input size in pixels (INPUT.SIZE)")
    parser.add_argument("--seed", type=int, help="seed (0 is a real seed)")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--workers", type=int, help="data-loading workers per process")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUTPUT/checkpoint-last.pth when it exists (else start afresh)",
    )
    parser.add_argument("--resume-from", metavar="CKPT", help="continue from this checkpoint")
    parser.add_argument("--list-methods", action="store_true", help="list the methods and exit")
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        metavar="KEY VALUE",
        default=[],
        help="trailing config overrides, e.g. OPTIM.CLIP_GRAD 3.0",
    )
    parser.set_defaults(func=run)
    return parser


def _list_methods() -> int:
    from sarfewshot.pretrain.methods import get_method, list_methods

    for name in list_methods():
        doc = (get_method(name).__doc__ or "").strip().splitlines()
        print(f"{name:15s} {plain_text(doc[0]) if doc else ''}")
    return 0


def plain_text(text: str) -> str:
    """A docstring line without reST markup (``code``, :func:`name`) for the terminal."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return re.sub(r"``([^`]+)``", r"\1", text)


def run(args: argparse.Namespace) -> int:
    """Build the config from the flags and run the pretraining."""
    if args.list_methods:
        return _list_methods()
    from sarfewshot.pretrain.config import setup_pretrain_cfg
    from sarfewshot.pretrain.train import resolve_config, run_pretraining

    opts = list(args.opts or [])
    if opts and opts[0] == "--":
        opts = opts[1:]
    if args.resume_from:
        opts += ["TRAIN.RESUME", args.resume_from]
    elif args.resume:
        opts += ["TRAIN.RESUME", "auto"]
    cfg = setup_pretrain_cfg(resolve_config(args.config), args=args, opts=opts)
    path = run_pretraining(cfg)
    if os.environ.get("RANK", "0") == "0":
        print(f"final checkpoint: {path}")
    return 0
