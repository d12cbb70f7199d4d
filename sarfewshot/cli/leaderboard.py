"""`sarfewshot leaderboard`: merge run folders' records into one table (and CSV/MD/LaTeX/PNG).

Dassl-style run folders join automatically: in a DIR that holds no sarfewshot records, every
``log.txt`` with a Dassl result block is read as a record (``--dassl-logs`` reads them in every
DIR, ``--no-dassl-logs`` never). Logs are not read next to records by default because a
sarfewshot run folder's own logs describe the same cells as its records. Run folders whose logs
hold no result block (unfinished or failed runs) are skipped and named in a warning on stderr.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from sarfewshot.errors import SarFewShotError

DASSL_MODES = ("auto", "always", "never")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `leaderboard` subcommand."""
    parser = sub.add_parser(
        "leaderboard",
        help="aggregate run folders into a leaderboard table",
        description="Merge the records of any number of run folders (and Dassl log.txt runs), "
        "de-duplicate cells, print mean ± population std (n) per (backbone, protocol) x "
        "(dataset, K), and write CSV / Markdown / LaTeX / PNG files.",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run folders to read")
    parser.add_argument("--csv", metavar="FILE", help="write one line per row (full precision)")
    parser.add_argument("--markdown", metavar="FILE", help="write the table as Markdown")
    parser.add_argument("--latex", metavar="FILE", help="write the table as a LaTeX tabular")
    parser.add_argument(
        "--plots",
        action="store_true",
        help="write accuracy-vs-shots and confusion-matrix PNGs (matplotlib)",
    )
    parser.add_argument(
        "--plots-dir",
        metavar="DIR",
        help="where PNGs go (default: next to --csv, else the first DIR)",
    )
    parser.add_argument(
        "--format",
        default="grid",
        metavar="FMT",
        help="tabulate format of the printed table (default: grid)",
    )
    parser.add_argument(
        "--robustness-csv",
        metavar="FILE",
        help="write the robustness table (accuracy per test condition and the drop from id "
        "with its paired interval over seeds; printed whenever records carry conditions)",
    )
    add_dassl_log_flags(parser)
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="warn about invalid record files instead of stopping",
    )
    parser.add_argument(
        "--include-diverged",
        action="store_true",
        help="average diverged cells (loss non-finite or far above its start) with the ok ones; "
        "by default they are counted, not averaged",
    )
    parser.set_defaults(func=run, dassl_logs="auto")
    return parser


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
                raise
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


def _write_files(args: argparse.Namespace, rows: list) -> list[Path]:
    from sarfewshot.results.export import write_csv, write_latex, write_markdown

    written = []
    if args.csv:
        written.append(write_csv(rows, args.csv))
    if args.markdown:
        written.append(write_markdown(rows, args.markdown))
    if args.latex:
        written.append(write_latex(rows, args.latex))
    if args.plots:
        from sarfewshot.results.plots import plot_confusions, plot_shots

        out = Path(args.plots_dir or (Path(args.csv).parent if args.csv else args.dirs[0]))
        written += plot_shots(rows, out)
        written += plot_confusions(rows, out)
    return written


def run(args: argparse.Namespace) -> int:
    """Build the leaderboard; prints the table and the written files."""
    from sarfewshot.results.aggregate import aggregate_records
    from sarfewshot.results.export import table_text

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            records = load_run_records(args.dirs, args.dassl_logs, args.skip_invalid)
            rows = aggregate_records(records, include_diverged=args.include_diverged)
        finally:
            # also when no result was found: the warnings (e.g. unfinished runs) say why
            print_warnings(caught)
    print(table_text(rows, fmt=args.format), end="")
    written = _write_files(args, rows)
    written += _robustness(args, records)
    for path in written:
        print(f"wrote {path}")
    return 0


def _robustness(args: argparse.Namespace, records: list[dict[str, Any]]) -> list[Path]:
    """Print the robustness table when records carry conditions (or its CSV is asked for)."""
    from sarfewshot.results.robustness import (
        has_conditions,
        robustness_rows,
        robustness_text,
        write_robustness_csv,
    )

    if not (has_conditions(records) or args.robustness_csv):
        return []
    rows = robustness_rows(records, include_diverged=args.include_diverged)
    print("\nrobustness (accuracy per test condition, drop from id):")
    print(robustness_text(rows, fmt=args.format), end="")
    return [write_robustness_csv(rows, args.robustness_csv)] if args.robustness_csv else []
