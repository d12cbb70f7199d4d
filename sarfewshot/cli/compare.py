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
    "boot_low",
    "boot_high",
    "p_t",
    "p_wilcoxon",
    "p_t_adj",
    "p_wilcoxon_adj",
    "p_adjust",
    "bootstrap_resamples",
    "note",
)
ADJUST_NAMES = {
    "holm": "Holm (family-wise error rate)",
    "bh": "Benjamini-Hochberg (false discovery rate)",
    "none": "none",
}
ALPHA = 0.05
POOLED_NOTE = (
    "pooled over all groups, not adjusted; cells of one seed share nested support sets "
    "across K (and one support set across protocols), so this interval and these p-values "
    "are optimistic"
)
EPILOG = """\
p-values are two-sided: the paired t-test (scipy.stats.ttest_rel) and the Wilcoxon
signed-rank test (scipy.stats.wilcoxon; with n <= 5 non-zero differences its exact p is at
least 0.0625, so it cannot reach 0.05 at 5 seeds). They are adjusted over the groups one call
reports (--adjust). The ALL line pools every pair and is not adjusted: the cells of one seed
share their (nested) support sets across K and protocols, so its interval and p-values are
optimistic. Backbones are written as the leaderboard prints them: NAME, or NAME@HASH when one
name has several weights files (any prefix of the weights sha256; NAME@none for a run
without weights). A weight-less backbone's name carries its architecture after the @
(random@irpe_vit_micro_patch8); plain `random` picks it when the records hold one architecture.
An unknown name lists the names the records hold.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `compare` subcommand."""
    parser = sub.add_parser(
        "compare",
        help="paired comparison of two backbones",
        description="Pair the cells both backbones have (same dataset, protocol, K, seed and "
        "split file) and report acc(a) - acc(b) with a paired Student-t 95 % interval, "
        "paired t-test and Wilcoxon p-values adjusted across the groups, per "
        "(dataset, protocol, K) and pooled.",
        epilog=EPILOG,
    )
    parser.add_argument("runs", nargs="+", metavar="RUNS", help="run folders to read")
    parser.add_argument(
        "--a", required=True, metavar="BACKBONE", help="first backbone (NAME or NAME@HASH)"
    )
    parser.add_argument("--b", required=True, metavar="BACKBONE", help="second backbone")
    parser.add_argument(
        "--csv", metavar="FILE", help="write one line per group plus the pooled line"
    )
    parser.add_argument(
        "--adjust",
        choices=tuple(ADJUST_NAMES),
        default="holm",
        help="multiple-testing adjustment across the groups (default: holm; bh: "
        "Benjamini-Hochberg)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="also a percentile bootstrap 95 %% interval from N resamples (e.g. 10000)",
    )
    parser.add_argument(
        "--bootstrap-seed", type=int, default=0, metavar="S", help="bootstrap seed (default 0)"
    )
    parser.add_argument(
        "--pool",
        action="store_true",
        help="a NAME with several weights files (e.g. pretraining seeds) stands for their mean "
        "accuracy per cell; the interval then covers the support-set draws, not the pretraining "
        "runs",
    )
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


def _fmt_p(p: float | None, mark: bool = False) -> str:
    if p is None:
        return "n/a"
    text = f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"
    return text + ("*" if mark and p < ALPHA else "")


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None else f"[{low:+.2f}, {high:+.2f}]"


def _lines(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The group lines, then the pooled ``ALL`` line (not adjusted)."""
    cells = result["cells"]
    overall = {
        **{k: v for k, v in result.items() if k not in ("groups", "cells", "skipped")},
        "dataset": "ALL",
        "protocol": "",
        "shots": "",
        "mean_a": sum(c["acc_a"] for c in cells) / len(cells),
        "mean_b": sum(c["acc_b"] for c in cells) / len(cells),
        "p_t_adj": None,
        "p_wilcoxon_adj": None,
        "p_adjust": "",
        "note": "; ".join(x for x in (POOLED_NOTE, result["note"]) if x),
    }
    groups = [{**g, "p_adjust": result["adjust"]} for g in result["groups"]]
    for line in (*groups, overall):
        line["bootstrap_resamples"] = result["bootstrap"] or None
    return [*groups, overall]


def _table(result: dict[str, Any]) -> str:
    from tabulate import tabulate

    boot = bool(result["bootstrap"])
    body = []
    for g in _lines(result):
        line = [g["dataset"], g["protocol"], g["shots"], g["n"]]
        line += [f"{g['mean_a']:.2f}", f"{g['mean_b']:.2f}", _fmt(g["mean_diff"])]
        line += [_interval(g["ci_low"], g["ci_high"])]
        line += [_interval(g["boot_low"], g["boot_high"])] if boot else []
        line += [_fmt_p(g["p_t"]), "" if g["dataset"] == "ALL" else _fmt_p(g["p_t_adj"], True)]
        line += [
            _fmt_p(g["p_wilcoxon"]),
            "" if g["dataset"] == "ALL" else _fmt_p(g["p_wilcoxon_adj"], True),
        ]
        body.append(line)
    adj = result["adjust"]
    headers = ["dataset", "protocol", "K", "n", f"acc {result['a']}", f"acc {result['b']}"]
    headers += ["diff (a-b)", "t 95% CI"] + (["bootstrap 95% CI"] if boot else [])
    headers += ["p t", f"p t {adj}", "p Wilcoxon", f"p Wilcoxon {adj}"]
    return tabulate(body, headers=headers, tablefmt="grid", disable_numparse=True)


def _footer(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    groups = result["groups"]
    lines = [
        f"diff = acc({result['a']}) - acc({result['b']}) in points over {result['n']} paired "
        f"cells in {len(groups)} group(s); CI: paired Student-t 95 %",
        "p: two-sided paired t-test / Wilcoxon signed-rank; adjusted across the "
        f"{len(groups)} group(s) with {ADJUST_NAMES[result['adjust']]}; "
        f"*: adjusted p < {ALPHA}",
    ]
    if result["bootstrap"]:
        lines.append(
            f"bootstrap: percentile 95 % interval of the mean difference, {result['bootstrap']} "
            f"resamples, seed {args.bootstrap_seed}"
        )
    lines.append(f"ALL: {POOLED_NOTE}; the per-group lines are the tests")
    if any(g["n"] <= 5 for g in groups):
        lines.append("Wilcoxon with n <= 5 cannot give p < 0.05 (smallest exact p: 2 / 2^n)")
    for g in groups:
        if g["note"]:
            lines.append(f"{g['dataset']} {g['protocol']} K={g['shots']}: {g['note']}")
    skipped = {k: v for k, v in result["skipped"].items() if v}
    if skipped:
        lines.append(f"unpaired cells skipped: {skipped}")
    return lines


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
            records,
            args.a,
            args.b,
            allow_unknown_split=args.allow_unknown_split,
            adjust=args.adjust,
            bootstrap=args.bootstrap,
            bootstrap_seed=args.bootstrap_seed,
            pool=args.pool,
        )
    print_warnings(caught)
    print(_table(result))
    print("\n".join(_footer(result, args)))
    if args.csv:
        atomic_write_text(args.csv, _csv_text(result))
        print(f"wrote {args.csv}")
    return 0
