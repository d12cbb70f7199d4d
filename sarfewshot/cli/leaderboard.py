"""`sarfewshot leaderboard`: merge run folders' records into one table (and CSV/MD/LaTeX/PNG).

Dassl-style run folders join automatically: in a DIR that holds no sarfewshot records, every
``log.txt`` with a Dassl result block is read as a record (``--dassl-logs`` reads them in every
DIR, ``--no-dassl-logs`` never). Logs are not read next to records by default because a
sarfewshot run folder's own logs describe the same cells as its records. Run folders whose logs
hold no result block (unfinished or failed runs) are skipped and named in a warning on stderr.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sarfewshot.cli.records import (
    add_record_flags,
    load_run_records,
    warnings_to_stderr,
)


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `leaderboard` subcommand."""
    parser = sub.add_parser(
        "leaderboard",
        help="aggregate run folders into a leaderboard table",
        description="Merge the records of any number of run folders (and Dassl log.txt runs), "
        "de-duplicate cells, print mean ± population std (n) per (backbone, protocol) x "
        "(dataset, K), and write CSV / Markdown / LaTeX / PNG files.",
    )
    parser.add_argument(
        "dirs",
        nargs="*",
        default=["runs"],
        metavar="DIR",
        help="run folders to read (default: runs, eval's default --output)",
    )
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
    parser.add_argument(
        "--html",
        metavar="SITE",
        help="also write SITE/index.html, the self-contained page of `sarfewshot board`",
    )
    add_record_flags(parser)
    parser.set_defaults(func=run)
    return parser


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


def _write_html(args: argparse.Namespace, records: list) -> list[Path]:
    if not args.html:
        return []
    from sarfewshot.cli.board import write_page

    return [write_page(records, args, args.html)]


def run(args: argparse.Namespace) -> int:
    """Build the leaderboard; prints the table and the written files."""
    from sarfewshot.results.aggregate import aggregate_records
    from sarfewshot.results.export import table_text

    with warnings_to_stderr():
        records = load_run_records(args.dirs, args.dassl_logs, args.skip_invalid)
        rows = aggregate_records(records, include_diverged=args.include_diverged)
    print(table_text(rows, fmt=args.format), end="")
    written = _write_files(args, rows) + _write_html(args, records)
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
