"""`sarfewshot pretrain`: self-supervised pretraining (SAR-JEPA and its baselines).

Runs as one process, or under ``torchrun --nproc_per_node=N -m sarfewshot pretrain ...`` (and
multi-node through torchrun's environment) with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
from typing import Sequence

from sarfewshot.utils.threads import add_threads_argument, apply_threads

EPILOG = """\
examples:
  sarfewshot pretrain --method sarjepa --data /data/MSAR /data/SAR-Ship \\
      --config configs/pretrain/sarjepa_vit_b16.yaml --output runs/sarjepa
  sarfewshot pretrain --config sarjepa_tiny --data chips/ --output runs/tiny --max-steps 30
  sarfewshot pretrain --config sarjepa_tiny --data chips/ --output runs/tiny --resume
  sarfewshot pretrain --config sarjepa_tiny --data /data/MSTAR --output runs/held \\
      --exclude-split mstar_soc:val --exclude-root /data/MSTAR_SOC   # never sees the val pools
  torchrun --nproc_per_node=4 -m sarfewshot pretrain --config sarjepa_vit_b16 --data /data/sar
  sarfewshot pretrain --config sarjepa_vit_b16 --data /data/shards --output runs/pt \\
      --launcher slurm --nodes 4 --gpus-per-node 8     # one 4-node torchrun job via submitit

presets: sarjepa_vit_b16 is the release's recipe and numerics (float32, the release's init and
window drawing); sarjepa_vit_b16_fast trades those for speed (bf16, the toolkit's init).

an output folder that holds a checkpoint is refused unless --resume or --overwrite is given.
checkpoints record the pretraining data (fingerprint and content sha256 of every image): resuming
on other data is refused unless --allow-data-change, and eval counts the scored images the
backbone saw (the record's contamination field).
Ctrl-C finishes the current step, saves OUTPUT/checkpoint-last.pth at that step and prints the
command that continues the run (a second Ctrl-C stops at once).

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
    add_threads_argument(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUTPUT/checkpoint-last.pth when it exists (else start afresh)",
    )
    parser.add_argument("--resume-from", metavar="CKPT", help="continue from this checkpoint")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an OUTPUT that holds a checkpoint (deletes its checkpoints and log)",
    )
    parser.add_argument(
        "--allow-data-change",
        action="store_true",
        default=None,
        help="resume although --data differs from the checkpoint's data (noted in log.jsonl)",
    )
    parser.add_argument(
        "--exclude-split",
        action="append",
        metavar="SPEC",
        help="leave a held-out set out of pretraining, matched by content sha256: a split JSON "
        "file (its val entries) or DATASET:val (the eval grid's validation pool); repeatable",
    )
    parser.add_argument(
        "--exclude-root",
        metavar="DIR",
        help="dataset root of the --exclude-split sets (their paths are relative to it)",
    )
    parser.add_argument(
        "--exclude-seeds",
        metavar="SEEDS",
        help="seeds of the DATASET:val pools, e.g. 1-6 (default: 1-6, the eval defaults)",
    )
    parser.add_argument("--list-methods", action="store_true", help="list the methods and exit")
    from sarfewshot.launch import add_launcher_arguments

    add_launcher_arguments(parser, pretrain=True)
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        metavar="KEY VALUE",
        default=[],
        help="trailing config overrides, e.g. OPTIM.CLIP_GRAD 3.0",
    )
    parser.set_defaults(func=run)
    _record_arguments(parser)
    return parser


def _record_arguments(parser: argparse.ArgumentParser) -> None:
    """Keep the raw arguments after ``pretrain`` as ``args.raw_args`` (for the resume hint).

    argparse hands a subcommand's parser exactly its own argument strings; the parsed namespace
    alone cannot give back what the user typed (order, spelling, ``--flag=value``).
    """
    parse = parser.parse_known_args

    def parse_known_args(
        args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        ns, rest = parse(args, namespace)
        ns.raw_args = list(sys.argv[2:] if args is None else args)
        return ns, rest

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


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
    if getattr(args, "launcher", None):
        from sarfewshot.launch import launch_pretrain

        return launch_pretrain(args)
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
    apply_threads(getattr(args, "threads", None), verbose=os.environ.get("RANK", "0") == "0")
    try:
        path = run_pretraining(cfg, overwrite=args.overwrite)
    except KeyboardInterrupt as exc:
        if os.environ.get("RANK", "0") == "0":
            print(_interrupted_message(exc, args), file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":
        print(f"final checkpoint: {path}")
    return 0


def _interrupted_message(exc: KeyboardInterrupt, args: argparse.Namespace) -> str:
    saved, step = getattr(exc, "checkpoint", None), getattr(exc, "step", None)
    head = (
        f"interrupted at step {step}: saved {saved}"
        if saved is not None
        else "interrupted: no checkpoint written now (the last saved one stands)"
    )
    return f"{head}\ncontinue with:\n  {resume_command(args)}"


def _matches(token: str, flag: str, shortest: int) -> bool:
    """``token`` names ``flag`` (exactly, as ``--flag=value``, or by an argparse abbreviation)."""
    name = token.split("=", 1)[0]
    return len(name) >= shortest and flag.startswith(name)


def _flag_tokens(raw: Sequence[str], n_opts: int) -> tuple[list[str], list[str]]:
    """Split the raw arguments into the flags and the trailing KEY VALUE pairs."""
    cut = len(raw) - n_opts
    return list(raw[:cut]), list(raw[cut:])


def resume_command(args: argparse.Namespace) -> str:
    """The user's command line with ``--resume`` (once), without ``--overwrite``/``--resume-from``.

    ``--resume-from CKPT`` would restart from CKPT rather than the checkpoint just saved, and
    ``--overwrite`` would delete it, so both are dropped. ``--resume`` goes before the trailing
    KEY VALUE pairs (argparse reads everything after the first of them as a pair).
    """
    raw = list(getattr(args, "raw_args", None) or _rebuilt_args(args))
    flags, opts = _flag_tokens(raw, len(args.opts or []))
    kept: list[str] = []
    skip = False
    for token in flags:
        if skip:
            skip = False
        elif _matches(token, "--resume-from", len("--resume-")):
            skip = "=" not in token  # its value is the next token
        elif _matches(token, "--overwrite", len("--ov")) or token == "--resume":
            continue
        else:
            kept.append(token)
    return shlex.join([*_program(), "pretrain", *kept, "--resume", *opts])


def _program() -> list[str]:
    """How this process was launched: ``sarfewshot``, ``python -m sarfewshot`` or torchrun."""
    if os.environ.get("TORCHELASTIC_RUN_ID") is not None:
        nproc = os.environ.get("LOCAL_WORLD_SIZE", "1")
        return ["torchrun", f"--nproc_per_node={nproc}", "-m", "sarfewshot"]
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith(os.path.join("sarfewshot", "__main__.py")):
        return [sys.executable, "-m", "sarfewshot"]
    on_path = shutil.which("sarfewshot")
    if os.path.basename(argv0) == "sarfewshot" and not (
        on_path and os.path.realpath(on_path) == os.path.realpath(argv0)
    ):
        return [argv0]  # a script not on PATH: its path runs it
    return ["sarfewshot"]  # on PATH, or main() called from Python


def _rebuilt_args(args: argparse.Namespace) -> list[str]:
    """Flags from the namespace, for callers that parsed without :func:`register`'s hook."""
    out: list[str] = []
    for name in ("method", "config", "output", "epochs", "max_steps", "batch_size", "img_size",
                 "seed", "device", "workers"):  # fmt: skip
        value = getattr(args, name, None)
        if value is not None:
            out += ["--" + name.replace("_", "-"), str(value)]
    if getattr(args, "data", None):
        out += ["--data", *map(str, args.data)]
    return out + list(args.opts or [])
