"""How the reporting commands (`leaderboard`, `compare`, `board`, `demo`) read run folders.

Shared flags and loading, kept apart from each command so that commands can call each other
(``leaderboard --html`` writes the board) without importing one another in a cycle.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from sarfewshot.errors import SarFewShotError

DASSL_MODES = ("auto", "always", "never")


def add_read_flags(parser: argparse.ArgumentParser) -> None:
    """How records are read, shared by every reporting command: the Dassl-log flags and
    ``--skip-invalid``."""
    add_dassl_log_flags(parser)
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="warn about invalid record files instead of stopping",
    )
    parser.set_defaults(dassl_logs="auto")


def add_record_flags(parser: argparse.ArgumentParser) -> None:
    """How records are read and counted, shared with ``board``: :func:`add_read_flags` and
    ``--include-diverged``."""
    add_read_flags(parser)
    parser.add_argument(
        "--include-diverged",
        action="store_true",
        help="average diverged cells (loss non-finite or far above its start) with the ok ones; "
        "by default they are counted, not averaged",
    )


def add_dassl_log_flags(parser: argparse.ArgumentParser) -> None:
    """``--dassl-logs`` / ``--no-dassl-logs`` (default ``auto``: only folders with no records)."""
    logs = parser.add_mutually_exclusive_group()
    logs.add_argument(
        "--dassl-logs",
        dest="dassl_logs",
        action="store_const",
        const="always",
        help="read Dassl log.txt runs in every folder, also next to records",
    )
    logs.add_argument(
        "--no-dassl-logs",
        dest="dassl_logs",
        action="store_const",
        const="never",
        help="ignore Dassl log.txt runs",
    )


def _dir_records(path: Path, skip_invalid: bool) -> list[dict[str, Any]]:
    from sarfewshot.results.records import RecordError, read_record, record_files

    records = []
    for file in record_files(path):
        try:
            records.append(read_record(file))
        except RecordError as exc:
            if not skip_invalid:
                raise RecordError(
                    f"{exc}; --skip-invalid leaves such files out (each named in a warning)"
                ) from None
            warnings.warn(f"{exc}; skipped", stacklevel=2)
    return records


def load_run_records(
    dirs: Sequence[str], dassl_logs: str = "auto", skip_invalid: bool = False
) -> list[dict[str, Any]]:
    """Records of every DIR (plus Dassl log runs per ``dassl_logs``: auto, always, never).

    Raises:
        SarFewShotError: a DIR that does not exist or yields no record, named.
    """
    from sarfewshot.results.dassl_logs import records_from_dassl_runs

    if dassl_logs not in DASSL_MODES:
        raise SarFewShotError(f"dassl_logs must be one of {DASSL_MODES}, got {dassl_logs!r}")
    out: list[dict[str, Any]] = []
    for name in dirs:
        path = Path(name)
        if not path.is_dir():
            raise SarFewShotError(f"run folder {name} does not exist or is not a folder")
        found = _dir_records(path, skip_invalid)
        if dassl_logs == "always" or (dassl_logs == "auto" and not found):
            found += records_from_dassl_runs([path])
        if not found:
            raise SarFewShotError(
                f"no results under {name}: no records/*.json files"
                + ("" if dassl_logs == "never" else " and no Dassl log.txt with a result block")
            )
        out.extend(found)
    return out


def print_warnings(caught: Sequence[warnings.WarningMessage]) -> None:
    """Show collected warnings as one ``warning: ...`` line each on stderr."""
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Collect the warnings raised inside and print them with :func:`print_warnings` on exit,
    also when the block raises (e.g. no result found: the warnings about unfinished runs say
    why)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            print_warnings(caught)
