"""``sarfewshot dassl-train``: CoOp's ``train.py`` on the toolkit's engine (Dassl not needed).

Takes the flags of CoOp-style ``train.py`` scripts and their YAML files, builds the config in
Dassl's merge order, trains the trainer named by ``TRAINER.NAME`` (``finetune``/``MIM_finetune``,
``linear``/``MIM_linear``, ...) on ``DataManager(cfg)`` and tests it. Everything printed is also
written to ``<output-dir>/log.txt`` the way Dassl's logger does (a new ``log.txt-<time>`` when
``log.txt`` exists): the arguments, the resolved config, the epochs, ``Finish training`` and
Dassl's result block, so CoOp's ``parse_test_res.py`` and ``sarfewshot leaderboard`` read it.

Differences from Dassl 0.6.3's script: ``--seed 0`` is a real seed; an output folder that holds
a finished run is skipped (exit 0) unless ``--force``, which trains again from scratch (the old
log is kept; checkpoints are overwritten); ``--weights``/``--arch`` are shortcuts for
``MODEL.INIT_WEIGHTS``/``MODEL.BACKBONE.ARCH``; ``--config-file``/``--dataset-config-file`` also
take the bundled release files by their repository path or name (``configs/datasets/MSTAR_SOC.yaml``
or ``MSTAR_SOC``) from any directory; a run that fails writes its error to ``log.txt`` too; the
per-batch lines replace the tqdm bar (they would share a terminal line with it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TextIO

from sarfewshot.errors import ConfigError, NonFiniteLossError, SarFewShotError, WeightsError

EPILOG = """\
examples (the SAR-JEPA release's configs ship with the package: give their repository path,
e.g. configs/datasets/MSTAR_SOC.yaml, or a bare name such as MSTAR_SOC, from any directory;
an existing file of yours with that path wins):
  sarfewshot dassl-train --root DATA --seed 1 --trainer MIM_finetune \\
      --dataset-config-file MSTAR_SOC \\
      --config-file configs/trainers/MIM_finetune/vit_b16.yaml \\
      --output-dir output/MSTAR_SOC/MIM_finetune/vit_b16_10shots/seed1 \\
      DATASET.NUM_SHOTS 10 MODEL.INIT_WEIGHTS sarjepa.pth
  sarfewshot dassl-train ... --eval-only --model-dir output/.../seed1 --load-epoch 40
"""

LOG_NAME = "log.txt"
_HIDDEN_ARGS = ("func", "command")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``dassl-train`` subcommand."""
    p = sub.add_parser(
        "dassl-train",
        help="train/test one config with CoOp train.py flags (Dassl-style log.txt)",
        description="Train and test one config with the flags of CoOp's train.py, on the "
        "toolkit's engine (Dassl is not needed); everything printed is also written to "
        "<output-dir>/log.txt, Dassl-style.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CoOp ``train.py``'s flags, plus ``--weights``, ``--arch`` and ``--force``."""
    p.add_argument("--root", default="", help="path to the dataset folder (DATASET.ROOT)")
    p.add_argument("--output-dir", default="", help="output directory (OUTPUT_DIR)")
    p.add_argument("--resume", default="", help="checkpoint directory to resume from (RESUME)")
    p.add_argument(
        "--seed", type=int, default=None, help="SEED; 0 is a real seed (default: the YAML's SEED)"
    )
    p.add_argument("--source-domains", nargs="+", help="DATASET.SOURCE_DOMAINS")
    p.add_argument("--target-domains", nargs="+", help="DATASET.TARGET_DOMAINS")
    p.add_argument("--transforms", nargs="+", help="INPUT.TRANSFORMS")
    p.add_argument(
        "--config-file",
        default="",
        help="method/trainer YAML: a file, or a bundled one such as "
        "configs/trainers/MIM_linear/vit_b16.yaml or MIM_linear/vit_b16",
    )
    p.add_argument(
        "--dataset-config-file",
        default="",
        help="dataset YAML: a file, or a bundled one such as configs/datasets/MSTAR_SOC.yaml "
        "or MSTAR_SOC",
    )
    p.add_argument("--trainer", default="", help="TRAINER.NAME")
    p.add_argument("--backbone", default="", help="MODEL.BACKBONE.NAME (a sarfewshot backbone)")
    p.add_argument("--head", default="", help="MODEL.HEAD.NAME")
    p.add_argument(
        "--weights",
        dest="init_weights",
        default="",
        metavar="PATH",
        help="MODEL.INIT_WEIGHTS (checkpoint path)",
    )
    p.add_argument("--arch", default="", help="MODEL.BACKBONE.ARCH (architecture override)")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", default="", help="load the model from this directory")
    p.add_argument("--load-epoch", type=int, help="load the weights of this epoch")
    p.add_argument("--no-train", action="store_true", help="build the trainer, do not train")
    p.add_argument(
        "--force", action="store_true", help="train again when --output-dir holds a finished run"
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="trailing KEY VALUE config overrides")


# ----------------------------------------------------------------------------- log file


class _Tee:
    """A text stream writing to the terminal stream and a log file (Dassl's logger)."""

    def __init__(self, stream: TextIO, log: TextIO) -> None:
        self.stream = stream
        self.log = log

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.log.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def new_log_path(output_dir: str | os.PathLike) -> Path:
    """``<output_dir>/log.txt``, or ``log.txt-<time>`` when it exists (kept, as Dassl does)."""
    folder = Path(output_dir)
    path = folder / LOG_NAME
    if not path.exists():
        return path
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
    path = folder / f"{LOG_NAME}-{stamp}"
    n = 1
    while path.exists():  # two runs within one second
        path = folder / f"{LOG_NAME}-{stamp}-{n}"
        n += 1
    return path


@contextmanager
def tee_stdout(path: Path) -> Iterator[None]:
    """Copy everything printed to ``sys.stdout`` into ``path`` until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        original = sys.stdout
        sys.stdout = _Tee(original, log)
        try:
            yield
        except BaseException as exc:
            # The CLI prints the error on stderr, which the tee does not copy: the log would
            # otherwise end silently where the run stopped.
            sys.stdout.flush()
            log.write(failure_text(exc))
            raise
        finally:
            sys.stdout.flush()
            sys.stdout = original


def failure_text(exc: BaseException) -> str:
    """What a failed run appends to its log: the one-line error, or the traceback of a bug."""
    if isinstance(exc, (SarFewShotError, NonFiniteLossError)):
        return f"error: {exc}\n"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted\n"
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def finished_log(output_dir: str | os.PathLike) -> Path | None:
    """A ``log.txt*`` in ``output_dir`` holding a test result after ``Finish training``."""
    from sarfewshot.results.dassl_logs import parse_dassl_log

    for path in sorted(Path(output_dir).glob(f"{LOG_NAME}*")):
        if not path.is_file():
            continue
        parsed = parse_dassl_log(path)
        if parsed is not None and not parsed["eval_only"]:
            return path
    return None


# ----------------------------------------------------------------------------- printing


def print_args(args: argparse.Namespace) -> None:
    """The ``** Arguments **`` block of CoOp's ``train.py``."""
    print("***************\n** Arguments **\n***************")
    for key in sorted(vars(args)):
        if key not in _HIDDEN_ARGS:
            print(f"{key}: {getattr(args, key)}")


def print_cfg(cfg: Any) -> None:
    """The ``** Config **`` block: the resolved config as yacs prints it."""
    print("************\n** Config **\n************")
    print(cfg)


def print_env() -> None:
    """One line of versions and the device (Dassl prints a longer environment report)."""
    import torch

    from sarfewshot import __version__

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"sarfewshot {__version__}, torch {torch.__version__}, device {device}")


# ----------------------------------------------------------------------------- run


def _clean_opts(args: argparse.Namespace) -> None:
    opts = list(args.opts or [])
    if opts and opts[0] == "--":
        opts = opts[1:]
    args.opts = opts


def bundled_config(text: str, kind: str, flag: str) -> str:
    """A YAML path for ``--config-file``/``--dataset-config-file``.

    An existing file wins; otherwise ``text`` names a bundled release file by its repository
    path (``configs/datasets/MSTAR_SOC.yaml``), its path under ``configs/<kind>/``
    (``MIM_linear/vit_b16.yaml``) or its name (``MSTAR_SOC``, ``MIM_linear/vit_b16``,
    ``MIM_linear`` when that folder holds one file).

    Raises:
        ConfigError: neither a file nor a bundled config, naming the flag and what is bundled.
    """
    if not text or os.path.isfile(text):
        return text
    from sarfewshot.configs import CONFIG_DIR

    rel = Path(text).as_posix().removeprefix("./")
    rel = rel.removeprefix("configs/")
    for candidate in (CONFIG_DIR / kind / rel, CONFIG_DIR / rel):
        for path in (candidate, candidate.with_name(candidate.name + ".yaml")):
            if path.is_file():
                return str(path)
        found = sorted(candidate.glob("*.yaml")) if candidate.is_dir() else []
        if len(found) == 1:
            return str(found[0])
    known = sorted(
        p.relative_to(CONFIG_DIR).as_posix() for p in (CONFIG_DIR / kind).rglob("*.yaml")
    )
    raise ConfigError(
        f"{flag} {text}: no such file, nor a bundled config; bundled: "
        + ", ".join(f"configs/{k}" for k in known)
    )


def resolve_config_files(args: argparse.Namespace) -> None:
    """Turn ``--config-file`` / ``--dataset-config-file`` names into paths (see above)."""
    args.config_file = bundled_config(args.config_file, "trainers", "--config-file")
    args.dataset_config_file = bundled_config(
        args.dataset_config_file, "datasets", "--dataset-config-file"
    )


def weights_source(args: argparse.Namespace) -> str:
    """Which setting gave ``MODEL.INIT_WEIGHTS`` (overrides > flags > YAML: the merge order)."""
    if "MODEL.INIT_WEIGHTS" in args.opts[::2]:
        return "MODEL.INIT_WEIGHTS"
    if args.init_weights:
        return "--weights"
    for flag, path in (
        ("--config-file", args.config_file),
        ("--dataset-config-file", args.dataset_config_file),
    ):
        if path and "INIT_WEIGHTS" in Path(path).read_text(encoding="utf-8", errors="replace"):
            return f"MODEL.INIT_WEIGHTS (from {flag} {path})"
    return "MODEL.INIT_WEIGHTS"


def check_weights(args: argparse.Namespace, cfg: Any) -> None:
    """A missing checkpoint, named by the option the user set (not always ``--weights``)."""
    from sarfewshot.models.checkpoint import RELEASE_WHERE

    weights = str(cfg.MODEL.INIT_WEIGHTS or "")
    if weights and not Path(weights).expanduser().is_file():
        raise WeightsError(f"{weights_source(args)} {weights}: file not found ({RELEASE_WHERE})")


def _check_args(args: argparse.Namespace) -> None:
    if args.eval_only and not args.model_dir:
        raise ConfigError(
            "--eval-only needs --model-dir (the folder holding <model>/model.pth.tar-N)"
        )
    if args.load_epoch is not None and not args.eval_only:
        raise ConfigError("--load-epoch is only used with --eval-only")


def _forget_checkpoints(trainer: Any, output_dir: str) -> None:
    """Drop the 'latest checkpoint' pointers so that ``--force`` trains from epoch 0."""
    from sarfewshot.engine.trainer import LATEST_POINTER

    for name in trainer.get_model_names():
        pointer = Path(output_dir) / name / LATEST_POINTER
        if pointer.is_file():
            pointer.unlink()


def check_trainer(name: str) -> None:
    """Refuse a protocol that is not a ``TrainerX`` (the feature protocols run in the grid)."""
    from sarfewshot.engine.registry import get_trainer
    from sarfewshot.engine.trainer import SimpleTrainer

    if not name:
        raise ConfigError("TRAINER.NAME is empty; pass --trainer NAME or set it in a YAML file")
    if not issubclass(get_trainer(name), SimpleTrainer):
        raise ConfigError(
            f"--trainer {name} is a feature protocol, not a TrainerX; dassl-train runs "
            "finetune/MIM_finetune, linear/MIM_linear, lora and partial (use `sarfewshot eval "
            f"--protocol {name}`)"
        )


def _train_or_test(args: argparse.Namespace, cfg: Any) -> None:
    from sarfewshot.data.datamanager import DataManager
    from sarfewshot.engine.trainer import build_trainer

    dm = DataManager(cfg)
    dm.show_dataset_summary()
    # The log is this command's product: the trainer prints everything, and the tee (not the
    # trainer's own log file) writes it, so nothing is written twice.
    # No tqdm bar: the per-batch lines say the same and would share its terminal line.
    trainer = build_trainer(
        cfg, dm, write_log=False, verbose=True, log_iterations=True, show_progress=False
    )
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if args.no_train:
        return
    if args.force:
        _forget_checkpoints(trainer, str(cfg.OUTPUT_DIR))
    trainer.train()


def run(args: argparse.Namespace) -> int:
    """Build the config, then train and test (or only test) with the output teed to log.txt."""
    from sarfewshot.engine.config import setup_cfg

    _clean_opts(args)
    _check_args(args)
    resolve_config_files(args)
    cfg = setup_cfg(args=args)
    check_trainer(cfg.TRAINER.NAME)
    output_dir = str(cfg.OUTPUT_DIR)
    done = None if (args.eval_only or args.no_train) else finished_log(output_dir)
    if done is not None and not args.force:
        print(f"{output_dir} already holds a finished run ({done.name}); skipped (--force reruns)")
        return 0
    with tee_stdout(new_log_path(output_dir)):
        print_args(args)
        print_cfg(cfg)
        print_env()
        check_weights(args, cfg)
        _train_or_test(args, cfg)
    return 0
