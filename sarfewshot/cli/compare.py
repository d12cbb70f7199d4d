"""`sarfewshot compare`: paired difference between two backbones over the cells both have."""

from __future__ import annotations

import argparse
import csv
import io
import warnings
from typing import Any

from sarfewshot.cli.leaderboard import add_dassl_log_flags

COLUMNS = (
    "dataset",
    "protocol",
    "shots",
    "n",
    "mean_a",
    "mean_b",
    "mean_diff",
    "std_diff",
    "ci95",
    "ci_low",
    "ci_high",
)


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `compare` subcommand."""
    parser = sub.add_parser(
        "compare",
        help="paired comparison of two backbones",
        description="Pair the cells both backbones have (same dataset, protocol, K, seed and "
        "split file) and report acc(a) - acc(b) with a paired Student-t 95 % interval, per "
        "(dataset, protocol, K) and overall.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUNS", help="run folders to read")
    parser.add_argument(
        "--a", required=True, metavar="BACKBONE", help="first backbone (NAME or NAME@SHA256PREFIX)"
    )
    parser.add_argument("--b", required=True, metavar="BACKBONE", help="second backbone")
    parser.add_argument("--csv", metavar="FILE", help="write the per-group and overall lines")
    parser.add_argument(
        "--allow-unknown-split",
        action="store_true",
        help="also pair cells without a split hash (records from Dassl logs)",
    )
    add_dassl_log_flags(parser)
    parser.set_defaults(func=run, dassl_logs="auto")
    return parser


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def _lines(result: dict[str, Any]) -> list[dict[str, Any]]:
    overall = {
        "dataset": "ALL",
        "protocol": "",
        "shots": "",
        "mean_a": None,
        "mean_b": None,
        **{k: result[k] for k in ("n", "mean_diff", "std_diff", "ci95", "ci_low", "ci_high")},
    }
    overall["mean_a"] = sum(c["acc_a"] for c in result["cells"]) / result["n"]
    overall["mean_b"] = sum(c["acc_b"] for c in result["cells"]) / result["n"]
    return [*result["groups"], overall]


def _table(result: dict[str, Any]) -> str:
    from tabulate import tabulate

    body = [
        [
            g["dataset"],
            g["protocol"],
            g["shots"],
            g["n"],
            f"{g['mean_a']:.2f}",
            f"{g['mean_b']:.2f}",
            _fmt(g["mean_diff"]),
            "" if g["ci95"] is None else f"[{g['ci_low']:+.2f}, {g['ci_high']:+.2f}]",
        ]
        for g in _lines(result)
    ]
    headers = [
        "dataset",
        "protocol",
        "K",
        "n",
        f"acc {result['a']}",
        f"acc {result['b']}",
        "diff (a-b)",
        "paired 95% CI",
    ]
    return tabulate(body, headers=headers, tablefmt="grid", disable_numparse=True)


def _csv_text(result: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("a", "b", *COLUMNS))
    for line in _lines(result):
        values = [
            ""
            if line[c] is None
            else (repr(line[c]) if isinstance(line[c], float) else str(line[c]))
            for c in COLUMNS
        ]
        writer.writerow((result["a"], result["b"], *values))
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    """Print the paired comparison (and write --csv)."""
    from sarfewshot.cli.leaderboard import load_run_records, print_warnings
    from sarfewshot.results.compare import paired_compare
    from sarfewshot.utils.io import atomic_write_text

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_run_records(args.runs, args.dassl_logs)
        result = paired_compare(
            records, args.a, args.b, allow_unknown_split=args.allow_unknown_split
        )
    print_warnings(caught)
    print(_table(result))
    skipped = {k: v for k, v in result["skipped"].items() if v}
    print(
        f"diff = acc({args.a}) - acc({args.b}) in points over {result['n']} paired cells; "
        "CI: paired Student-t 95 %" + (f"; unpaired cells skipped: {skipped}" if skipped else "")
    )
    if args.csv:
        atomic_write_text(args.csv, _csv_text(result))
        print(f"wrote {args.csv}")
    return 0
