"""Entry point of the ``sarfewshot`` command.

Each subcommand lives in its own module of this package and exposes
``register(subparsers) -> argparse.ArgumentParser``; the parser's default ``func`` runs it and
returns an exit code. Subcommand modules import torch and friends inside ``run`` so that
``sarfewshot --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Iterator, Sequence

from sarfewshot import __version__
from sarfewshot.cli.helpfmt import HelpFormatter
from sarfewshot.errors import NonFiniteLossError, SarFewShotError

SUBCOMMANDS = (
    "eval",
    "leaderboard",
    "compare",
    "pretrain",
    "data",
    "backbones",
    "demo",
    "dassl_train",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="sarfewshot",
        description="Reproducible few-shot SAR target recognition benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"sarfewshot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"sarfewshot.cli.{name}").register(sub)
    for each in iter_parsers(parser):
        # One formatter everywhere: prose wraps to the terminal, indented examples stay as is.
        each.formatter_class = HelpFormatter
    return parser


def iter_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from iter_parsers(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line on stderr and exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except SarFewShotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "interrupted: finished results are kept; run the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
