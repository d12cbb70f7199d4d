"""`sarfewshot compare`: paired difference between two backbones over the cells both have."""

from __future__ import annotations

import argparse
import csv
import io
import warnings
from typing import Any

from sarfewshot.cli.records import add_read_flags

COLUMNS = (
    "dataset",
    "protocol",
    "shots",
    "n",
    "mean_a",
    "mean_b",
    "seen_a",
    "seen_b",
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
    "unit",
    "test",
    "interval",
    "runs_a",
    "runs_b",
    "df",
    "mdd80",
    "family_size",
    "run_pairs",
    "run_pairs_agree",
    "p_agree",
    "note",
)
SEED_TEST = "paired t-test over seeds (scipy.stats.ttest_rel)"
SEED_INTERVAL = "paired Student-t 95 %, unadjusted, over seeds"
POOL_CONDITION = "conditional on these pretraining runs (run-to-run variation left out)"
RUN_INTERVAL = "Student-t 95 %, unadjusted, over runs x seeds"
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
When a name has several weights files (pretraining runs), the run is the experimental unit:
per group, a two-sample t-test on the run means (the exact test of the mixed model with seeds
nested in runs; --run-test mixedlm fits statsmodels' MixedLM instead), its interval over runs x
seeds, the minimum detectable difference at 80 % power, and how many run pairings agree in sign
with the probability of that agreement under no difference. --pool instead averages the runs
per cell and tests over the seeds: conditional on these runs.

Single weights files (and --pool): p-values are two-sided: the paired t-test
(scipy.stats.ttest_rel) and the Wilcoxon signed-rank test (scipy.stats.wilcoxon; with n <= 5
non-zero differences its exact p is at least 0.0625, so it cannot reach 0.05 at 5 seeds).
They are adjusted over the groups one call reports, or over --family (--adjust). The ALL
line pools every pair and is not adjusted: the cells of one seed share their (nested) support
sets across K and protocols, so its interval and p-values are optimistic. Backbones are
written as the leaderboard prints them: NAME, or NAME@HASH when one name has several weights
files (any prefix of the weights sha256; NAME@none for a run
without weights). A weight-less backbone's name carries its architecture after the @
(random@irpe_vit_micro_patch8); plain `random` picks it when the records hold one architecture.
An unknown name lists the names the records hold.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `compare` subcommand."""
    parser = sub.add_parser(
        "compare",
        help="paired comparison of two backbones",
        description="Compare acc(a) - acc(b) per (dataset, protocol, K) over the cells both "
        "backbones have (same dataset, protocol, K, seed, split file and dataset version). A "
        "name with several weights files (pretraining runs) is compared with the run as the "
        "unit (t-test on run means, minimum detectable difference, run-pairing agreement); "
        "single weights files (or --pool) get the paired Student-t 95 % interval over the "
        "seeds, paired t-test and Wilcoxon p-values, and a pooled line. p-values are adjusted "
        "across the groups or a pre-registered --family.",
        epilog=EPILOG,
    )
    _add_selection_args(parser)
    _add_statistics_args(parser)
    _add_pairing_args(parser)
    add_read_flags(parser)
    parser.set_defaults(func=run)
    return parser


def _add_selection_args(parser: argparse.ArgumentParser) -> None:
    """The run folders, the two backbones and the CSV output."""
    parser.add_argument("runs", nargs="+", metavar="RUNS", help="run folders to read")
    parser.add_argument(
        "--a", required=True, metavar="BACKBONE", help="first backbone (NAME or NAME@HASH)"
    )
    parser.add_argument("--b", required=True, metavar="BACKBONE", help="second backbone")
    parser.add_argument(
        "--csv", metavar="FILE", help="write one line per group plus the pooled line"
    )


def _add_statistics_args(parser: argparse.ArgumentParser) -> None:
    """The tests: p-value adjustment, bootstrap, pooling, run-unit test and family."""
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
        "accuracy per cell, tested over the seeds: conditional on these runs (default: the run "
        "is the unit)",
    )
    parser.add_argument(
        "--run-test",
        choices=("means", "mixedlm"),
        default="means",
        help="run-unit test: two-sample t on run means (default) or statsmodels MixedLM",
    )
    parser.add_argument(
        "--family",
        action="append",
        metavar="FILE",
        help="CSV (a,b,dataset,protocol,shots) of the pre-registered comparisons the adjustment "
        "counts; repeat to join files (default: the groups of this call)",
    )


def _add_pairing_args(parser: argparse.ArgumentParser) -> None:
    """Which cells may pair: unknown splits and dataset versions."""
    parser.add_argument(
        "--allow-unknown-split",
        action="store_true",
        help="also pair cells without a split hash (records from Dassl logs)",
    )
    parser.add_argument(
        "--allow-data-change",
        action="store_true",
        help="also pair cells computed on different versions of the dataset folder (other "
        "fingerprints: chips added, removed or replaced); by default such pairs stop the "
        "command (exit 2); with this flag the table and every CSV line say so",
    )


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def _fmt_p(p: float | None, mark: bool = False) -> str:
    if p is None:
        return "n/a"
    text = f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"
    return text + ("*" if mark and p < ALPHA else "")


def _k(shots: int | str) -> str:
    """K as tables print it (``all`` for the whole train pool); the pooled line has none."""
    from sarfewshot.results.export import shots_text

    return shots if shots == "" else shots_text(shots)


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
        "note": "; ".join(x for x in (POOLED_NOTE, result["note"], result["data_change"]) if x),
    }
    groups = [{**g, "p_adjust": result["adjust"]} for g in result["groups"]]
    interval = SEED_INTERVAL + (f", {POOL_CONDITION}" if result["pooled_runs"] else "")
    for line in (*groups, overall):
        line["bootstrap_resamples"] = result["bootstrap"] or None
        line.update(unit="seed", test=SEED_TEST, interval=interval)
        line["family_size"] = result["family_size"] if line is not overall else None
    return [*groups, overall]


def _family_text(result: dict[str, Any], n_groups: int) -> str:
    """What the adjustment counted: this call's groups, or the pre-registered family."""
    if result["family_size"] == n_groups and not result.get("family_given"):
        return f"the {n_groups} group(s)"
    return (
        f"the pre-registered family of {result['family_size']} comparison(s) "
        f"({n_groups} here; the others count as p = 1)"
    )


def _run_lines(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The run-unit groups in the CSV's columns (``n``: the seeds every run has)."""
    return [
        {
            **g,
            "n": g["seeds"],
            "p_t": g["p"],
            "p_t_adj": g["p_adj"],
            "p_adjust": result["adjust"],
            "unit": "run",
            "test": result["test"],
            "interval": RUN_INTERVAL,
            "family_size": result["family_size"],
            "note": "; ".join(x for x in (g.get("note", ""), result["data_change"]) if x),
        }
        for g in result["groups"]
    ]


def _agree_text(g: dict[str, Any]) -> str:
    """``3/4 (P 0.67)``: the agreement and its probability under no difference, or nothing."""
    if g["p_agree"] is None:
        return ""
    return f"{g['run_pairs_agree']}/{g['run_pairs']} (P {g['p_agree']:.2f})"


def _run_table(result: dict[str, Any]) -> str:
    from tabulate import tabulate

    body = [
        [g["dataset"], g["protocol"], _k(g["shots"]), f"{g['runs_a']}x{g['runs_b']}", g["seeds"]]
        + [f"{g['mean_a']:.2f}", f"{g['mean_b']:.2f}", _fmt(g["mean_diff"])]
        + [_interval(g["ci_low"], g["ci_high"]), _fmt_p(g["p"]), _fmt_p(g["p_adj"], True)]
        + ["" if g["mdd80"] is None else f"{g['mdd80']:.2f}", _agree_text(g)]
        for g in result["groups"]
    ]
    adj = result["adjust"]
    headers = ["dataset", "protocol", "K", "runs a x b", "seeds", f"acc {result['a']}"]
    headers += [f"acc {result['b']}", "diff (a-b)", "95% CI runs x seeds", "p", f"p {adj}"]
    headers += ["MDD 80%", "pairings agree"]
    return tabulate(body, headers=headers, tablefmt="grid", disable_numparse=True)


def _run_footer(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = [
        f"diff = acc({result['a']}) - acc({result['b']}) in points; the pretraining run is the "
        f"unit: {result['test']}",
        f"CI: {RUN_INTERVAL}; p: two-sided, adjusted across "
        f"{_family_text(result, len(result['groups']))} with {ADJUST_NAMES[result['adjust']]}; "
        f"*: adjusted p < {ALPHA}",
        "MDD 80%: the smallest difference this design (these runs and seeds, the observed "
        f"spread of the run means) detects with 80 % power at an unadjusted two-sided {ALPHA} "
        "(statsmodels.stats.power); a non-significant difference smaller than it is no tie",
        "pairings agree: run pairings (one run of each) whose difference has the mean's sign; P: "
        "the probability that this many or more point one way when there is no difference "
        "(exact Mann-Whitney; all 4 of 2x2 runs: 1/3)",
    ]
    if args.bootstrap:
        lines.append("--bootstrap applies to the seed-level test (--pool or single weights)")
    return lines + _note_lines(result)


def _table(result: dict[str, Any]) -> str:
    from tabulate import tabulate

    boot = bool(result["bootstrap"])
    body = []
    for g in _lines(result):
        line = [g["dataset"], g["protocol"], _k(g["shots"]), g["n"]]
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
    interval = SEED_INTERVAL + (f", {POOL_CONDITION}" if result["pooled_runs"] else "")
    lines = [
        f"diff = acc({result['a']}) - acc({result['b']}) in points over {result['n']} paired "
        f"cells in {len(groups)} group(s); CI: {interval}",
        "p: two-sided paired t-test / Wilcoxon signed-rank; adjusted across "
        f"{_family_text(result, len(groups))} with {ADJUST_NAMES[result['adjust']]}; "
        f"*: adjusted p < {ALPHA}",
        "MDD 80%: the smallest mean difference the paired t-test over these seeds detects "
        f"with 80 % power at an unadjusted {ALPHA} (statsmodels.stats.power): "
        + ", ".join(
            f"{g['protocol']} K={_k(g['shots'])} {g['mdd80']:.2f}"
            for g in groups
            if g["mdd80"] is not None
        ),
    ]
    if result["bootstrap"]:
        lines.append(
            f"bootstrap: percentile 95 % interval of the mean difference, {result['bootstrap']} "
            f"resamples, seed {args.bootstrap_seed}"
        )
    lines.append(f"ALL: {POOLED_NOTE}; the per-group lines are the tests")
    if any(g["n"] <= 5 for g in groups):
        lines.append("Wilcoxon with n <= 5 cannot give p < 0.05 (smallest exact p: 2 / 2^n)")
    lines += _note_lines(result)
    skipped = {k: v for k, v in result["skipped"].items() if v}
    if skipped:
        lines.append(f"unpaired cells skipped: {skipped}")
    return lines


def _note_lines(result: dict[str, Any]) -> list[str]:
    """The footer's tail at either unit: each group's note, the data-change warning and the
    contamination lines."""
    lines = [
        f"{g['dataset']} {g['protocol']} K={_k(g['shots'])}: {g['note']}"
        for g in result["groups"]
        if g["note"]
    ]
    if result["data_change"]:
        lines.append(f"WARNING: {result['data_change']}; these test sets differ")
    return lines + _seen_lines(result)


def _seen_lines(result: dict[str, Any]) -> list[str]:
    """One line per arm whose backbone saw some of the scored images in pretraining."""
    return [
        f"contamination: {result[side]} saw up to {result[f'seen_{side}']} of a cell's "
        "scored images in pretraining (CSV columns seen_a, seen_b)"
        for side in ("a", "b")
        if result.get(f"seen_{side}")
    ]


def _csv_text(result: dict[str, Any], lines: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("a", "b", *COLUMNS))
    for line in lines:
        values = [
            ""
            if line.get(c) is None
            else (repr(line[c]) if isinstance(line[c], float) else str(line[c]))
            for c in COLUMNS
        ]
        writer.writerow((result["a"], result["b"], *values))
    return buf.getvalue()


def _several_runs(records: list[dict], args: argparse.Namespace) -> bool:
    """Whether --a or --b names several weights files (and --pool was not asked for)."""
    from sarfewshot.results.aggregate import deduplicate
    from sarfewshot.results.compare import select_weights

    if args.pool:
        return False
    kept, _ = deduplicate(records)
    return any(
        len(select_weights(kept, spec, flag)[1]) > 1
        for spec, flag in ((args.a, "--a"), (args.b, "--b"))
    )


def _compare(records: list[dict], args: argparse.Namespace) -> tuple[dict, list[dict], str]:
    """The result, its CSV lines and its printed text, at the run or the seed unit."""
    from sarfewshot.results.compare import paired_compare, read_family
    from sarfewshot.results.runcompare import run_compare

    family = read_family(args.family) if args.family else None
    if _several_runs(records, args):
        result = run_compare(
            records,
            args.a,
            args.b,
            adjust=args.adjust,
            run_test=args.run_test,
            family=family,
            allow_unknown_split=args.allow_unknown_split,
            allow_data_change=args.allow_data_change,
        )
        result["family_given"] = family is not None
        text = "\n".join([_run_table(result), *_run_footer(result, args)])
        return result, _run_lines(result), text
    result = paired_compare(
        records,
        args.a,
        args.b,
        allow_unknown_split=args.allow_unknown_split,
        allow_data_change=args.allow_data_change,
        adjust=args.adjust,
        bootstrap=args.bootstrap,
        bootstrap_seed=args.bootstrap_seed,
        pool=args.pool,
        family=family,
    )
    result["family_given"] = family is not None
    return result, _lines(result), "\n".join([_table(result), *_footer(result, args)])


def run(args: argparse.Namespace) -> int:
    """Print the comparison (and write --csv)."""
    from sarfewshot.cli.records import load_run_records, print_warnings
    from sarfewshot.utils.io import atomic_write_text

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_run_records(args.runs, args.dassl_logs, args.skip_invalid)
        result, lines, text = _compare(records, args)
    print_warnings(caught)
    print(text)
    if args.csv:
        atomic_write_text(args.csv, _csv_text(result, lines))
        print(f"wrote {args.csv}")
    return 0
