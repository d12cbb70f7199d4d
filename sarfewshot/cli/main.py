"""Entry point of the ``sarfewshot`` command.

Each subcommand lives in its own module of this package and exposes
``register(subparsers) -> argparse.ArgumentParser``; the parser's default ``func`` runs it and
returns an exit code. Subcommand modules import torch and friends inside ``run`` so that
``sarfewshot --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from typing import Iterator, Sequence

from sarfewshot import __version__
from sarfewshot.cli.helpfmt import HelpFormatter
from sarfewshot.errors import NonFiniteLossError, SarFewShotError
from sarfewshot.utils.torch_builds import is_torchvision_mismatch, mismatch_message

SUBCOMMANDS = (
    "eval",
    "leaderboard",
    "compare",
    "board",
    "pretrain",
    "data",
    "backbones",
    "weights",
    "demo",
    "dassl_train",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = _TopParser(
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
        _add_debug(each)
    return parser


def iter_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from iter_parsers(child)


class _TopParser(argparse.ArgumentParser):
    """Reports stray arguments with the usage of the subcommand that got them (``data list``'s,
    not the top-level one)."""

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            chosen_parser(self, ns).error(f"unrecognized arguments: {' '.join(extra)}")
        return ns


def chosen_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The deepest (sub)command parser that ``args`` selected, e.g. ``data list``'s."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            child = action.choices.get(getattr(args, action.dest, None) or "")
            if child is not None:
                return chosen_parser(child, args)
    return parser


def _add_debug(parser: argparse.ArgumentParser) -> None:
    # Accepted before or after the subcommand; on a parser with subcommands SUPPRESS keeps its
    # default from overwriting the subcommand's --debug.
    nested = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS if nested else False,
        help="show the full Python traceback of an error (also SARFEWSHOT_DEBUG=1)",
    )


def debug_enabled(args: argparse.Namespace | None = None) -> bool:
    """Whether ``--debug`` or ``SARFEWSHOT_DEBUG=1`` asks for tracebacks."""
    flag = bool(getattr(args, "debug", False))
    return flag or os.environ.get("SARFEWSHOT_DEBUG", "") not in ("", "0")


def os_error_message(exc: OSError) -> str:
    """One line naming the path of an OS error (``exc.filename``, else the message alone)."""
    reason = exc.strerror or worker_error_message(exc)
    if exc.filename is None:
        return reason
    where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else exc.filename
    return f"{where}: {reason}"


def worker_error_message(exc: BaseException) -> str:
    """The message of ``exc``; for an error re-raised from a DataLoader worker (torch puts the
    worker's whole traceback in the message), its original last line, said to come from one."""
    text = str(exc)
    if "\nOriginal Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    for name in (f"{type(exc).__module__}.{type(exc).__qualname__}: ", f"{type(exc).__name__}: "):
        if last.startswith(name):  # builtins print without their module
            last = last[len(name) :]
            break
    return f"{last} (in a data-loading worker)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line on stderr and exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    args.raw_argv = list(sys.argv[1:] if argv is None else argv)  # for rerun hints
    debug = debug_enabled(args)
    previous = os.environ.get("SARFEWSHOT_DEBUG")
    if debug:
        os.environ["SARFEWSHOT_DEBUG"] = "1"  # failed grid cells print their tracebacks too
    try:
        with warnings.catch_warnings():
            if not debug:  # --debug keeps Python's form (category, file and source line)
                warnings.showwarning = _one_line_warning(warnings.showwarning)
            return int(args.func(args) or 0)
    except SarFewShotError as exc:
        return _fail(f"error: {worker_error_message(exc)}", 2, debug)
    except NonFiniteLossError as exc:
        return _fail(f"error: {exc}", 1, debug)
    except OSError as exc:
        hint = "" if debug else " (--debug shows the traceback)"
        return _fail(f"error: {os_error_message(exc)}{hint}", 2, debug)
    except RuntimeError as exc:
        if not is_torchvision_mismatch(exc):
            raise
        return _fail(f"error: {mismatch_message()}", 2, debug)
    except KeyboardInterrupt:
        print(
            "interrupted: finished results are kept; run the same command to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        if previous is None:
            os.environ.pop("SARFEWSHOT_DEBUG", None)
        else:
            os.environ["SARFEWSHOT_DEBUG"] = previous


def _package_dirs() -> list[str]:
    """The toolkit's source folders: the package and its plug-in packages (datasets, trainers)."""
    import importlib.util

    dirs = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    for name in ("sarfewshot.datasets", "sarfewshot.trainers"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        dirs += (
            [os.path.abspath(d) for d in (spec.submodule_search_locations or [])] if spec else []
        )
    return dirs


def _one_line_warning(fallback):
    """A ``warnings.showwarning`` that prints the toolkit's warnings as ``warning: <message>``.

    Python's default form adds the category, the file, the line number and the source line of
    the ``warnings.warn`` call, which tells a user nothing; other packages' warnings keep it.
    """
    roots = tuple(d + os.sep for d in _package_dirs())

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        where = os.path.abspath(str(filename))
        ours = category.__module__.startswith("sarfewshot") or where.startswith(roots)
        if not ours:
            fallback(message, category, filename, lineno, file, line)
            return
        print(f"warning: {message}", file=file or sys.stderr)

    return show


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(message, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
