"""``sarfewshot board``: the leaderboard of run folders as one self-contained HTML page.

It reads records exactly as ``leaderboard`` does (same folders, Dassl-log and invalid-record
flags, same de-duplication and marks) and writes ``<SITE>/index.html``: the board, shot curves,
paired comparisons with a reference backbone, per-cell details, provenance, robustness (when the
records carry test conditions) and the command that regenerates it (see ``docs/board.md``).
"""

from __future__ import annotations

import argparse
import shlex
import warnings
from pathlib import Path
from typing import Any, Sequence

from sarfewshot.cli.records import add_record_flags


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``board`` subcommand."""
    p = sub.add_parser(
        "board",
        help="write the leaderboard as one self-contained HTML page",
        description="Merge the records of run folders as `leaderboard` does and write "
        "SITE/index.html: one file with every style, script and plot inline, that makes no "
        "network request (open it from disk, attach it to an email).",
    )
    p.add_argument("dirs", nargs="+", metavar="RUNS", help="run folders to read")
    p.add_argument("--out", required=True, metavar="SITE", help="folder of index.html")
    add_board_flags(p)
    add_record_flags(p)
    p.set_defaults(func=run)
    return p


def add_board_flags(p: argparse.ArgumentParser) -> None:
    """``--reference`` (also on ``leaderboard --html``)."""
    p.add_argument(
        "--reference",
        action="append",
        metavar="BACKBONE",
        help="backbone the others are compared with, as `compare` spells it (repeatable; "
        "default: every backbone when there are at most 6, else the first by name)",
    )


def board_command(args: argparse.Namespace, out: str) -> str:
    """The ``sarfewshot board`` command line that rebuilds the page from the same folders."""
    argv = ["sarfewshot", "board", *args.dirs, "--out", str(out)]
    for ref in getattr(args, "reference", None) or []:
        argv += ["--reference", ref]
    flags = {"always": "--dassl-logs", "never": "--no-dassl-logs"}
    if args.dassl_logs in flags:
        argv.append(flags[args.dassl_logs])
    if getattr(args, "skip_invalid", False):
        argv.append("--skip-invalid")
    if getattr(args, "include_diverged", False):
        argv.append("--include-diverged")
    return shlex.join(argv)


def write_page(
    records: Sequence[dict[str, Any]], args: argparse.Namespace, out: str | Path
) -> Path:
    """Write ``<out>/index.html`` for ``records`` (the warnings are shown on the page)."""
    from sarfewshot.results.board_page import write_board

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the page lists them; the caller printed them already
        return write_board(
            records,
            out,
            references=getattr(args, "reference", None),
            include_diverged=getattr(args, "include_diverged", False),
            command=board_command(args, str(out)),
        )


def run(args: argparse.Namespace) -> int:
    """Load the records, write the page, print its path."""
    from sarfewshot.cli.records import load_run_records, warnings_to_stderr

    with warnings_to_stderr():
        records = load_run_records(args.dirs, args.dassl_logs, args.skip_invalid)
    print(f"wrote {write_page(records, args, args.out)}")
    return 0
