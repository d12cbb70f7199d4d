"""Comparison of two backbones with the pretraining run as the unit.

A backbone name with several weights files (pretraining runs) stands for a method whose runs
vary. Per (dataset, protocol, shots) group, each run's accuracies over the support seeds form a
runs x seeds table; the test is the two-sample t-test on the run means (or the mixed model, see
:mod:`sarfewshot.results.runstats`), its interval covers runs x seeds, and the p-values are
adjusted over the groups (or a pre-registered family). Each group also reports the minimum
detectable difference at 80 % power and how many run pairings agree in sign, with the
probability of that agreement under no difference.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from sarfewshot.errors import SarFewShotError
from sarfewshot.results.aggregate import deduplicate
from sarfewshot.results.compare import (
    CELL_FIELDS,
    _adjust_groups,
    _check_options,
    _label,
    _seen,
    _version_error,
    _versions_note,
    cells_per_weights,
    family_size,
    refuse_shared_weights,
    select_weights,
)
from sarfewshot.results.contamination import seen_max
from sarfewshot.results.records import dataset_version
from sarfewshot.results.runstats import (
    RUN_TESTS,
    agreement,
    mdd_run_means,
    mixedlm_test,
    run_means_test,
)

__all__ = ["run_compare", "run_means_row", "run_unit_row"]


def _runs(records: Sequence[Mapping[str, Any]], spec: str, flag: str) -> tuple[str, list[dict]]:
    """The label of ``spec`` and, per weights file, its ok records by cell."""
    name, shas, mine = select_weights(records, spec, flag)
    runs = cells_per_weights(mine, shas, flag, spec)
    label = name if len(shas) > 1 else _label(records, name, mine[0]["key"]["weights_sha256"])
    return label, runs


def _group_seen(runs: list[dict], group: tuple, seeds: Sequence[int]) -> int | None:
    """The most scored images any run of one arm saw in pretraining, over a group's seeds."""
    return seen_max(
        rec
        for by_cell in runs
        for cell, rec in by_cell.items()
        if cell[:3] == group and cell[3] in seeds
    )


def _mixed_versions(cells: Mapping[tuple, dict]) -> dict[tuple, int]:
    """Per (dataset, version a, version b): the cells whose two arms ran on other folders."""
    mixed: dict[tuple, int] = {}
    for cell, recs in cells.items():
        by_side = [
            {dataset_version(rec) for (side, _), rec in recs.items() if side == s} - {None}
            for s in (0, 1)
        ]
        if len(by_side[0] | by_side[1]) > 1:
            key = (cell[0], min(by_side[0] or {""}), min(by_side[1] or {""}))
            mixed[key] = mixed.get(key, 0) + 1
    return mixed


def _tables(
    runs_a: list[dict], runs_b: list[dict], allow_unknown_split: bool = False
) -> tuple[dict[tuple, tuple[list, np.ndarray, np.ndarray]], dict[tuple, int]]:
    """Per group: the seeds, and the runs x seeds tables of a and b (NaN: a run lacks the seed).

    A seed enters a group when every run that has it has it on one split file and both arms
    have it at least once; the split file is what makes seeds comparable across runs. Cells
    without a split hash (records from Dassl logs) enter only with ``allow_unknown_split``.
    Also returns the cells computed on more than one version of the dataset folder.
    """
    cells: dict[tuple, dict] = {}
    for side, runs in enumerate((runs_a, runs_b)):
        for r, by_cell in enumerate(runs):
            for cell, rec in by_cell.items():
                cells.setdefault(cell, {})[(side, r)] = rec
    groups: dict[tuple, dict] = {}
    for cell, recs in cells.items():
        splits = {rec["split"].get("sha256") for rec in recs.values()}
        sides = {side for side, _ in recs}
        if len(splits) != 1 or sides != {0, 1} or (None in splits and not allow_unknown_split):
            continue
        groups.setdefault(cell[:3], {})[cell[3]] = recs
    out = {}
    for group, by_seed in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        seeds = sorted(by_seed)
        tabs = []
        for side, runs in enumerate((runs_a, runs_b)):
            tab = np.full((len(runs), len(seeds)), np.nan)
            for j, seed in enumerate(seeds):
                for (s, r), rec in by_seed[seed].items():
                    if s == side:
                        tab[r, j] = float(rec["metrics"]["accuracy"])
            tabs.append(tab)
        out[group] = (seeds, tabs[0], tabs[1])
    kept = {c: r for c, r in cells.items() if c[:3] in groups and c[3] in groups[c[:3]]}
    return out, _mixed_versions(kept)


def run_unit_row(
    table_a: np.ndarray, table_b: np.ndarray, run_test: str = "means"
) -> dict[str, Any]:
    """The run-unit statistics of one group from its runs x seeds tables (NaN: missing).

    The run means use the seeds every run has (so that shared seed effects cancel); the mixed
    model uses every value. Returns :func:`run_means_row`'s fields and ``seeds``.
    """
    if run_test not in RUN_TESTS:
        raise SarFewShotError(f"--run-test {run_test}: choose one of {', '.join(RUN_TESTS)}")
    full = ~np.isnan(np.vstack([table_a, table_b])).any(axis=0)
    if not full.any():
        raise SarFewShotError("no seed that every run has in this group")
    means_a, means_b = table_a[:, full].mean(axis=1), table_b[:, full].mean(axis=1)
    row = run_means_row(means_a, means_b)
    if run_test == "mixedlm":
        res = mixedlm_test(table_a, table_b)
        row.update({k: res[k] for k in ("ci_low", "ci_high", "p", "df")}, mean_diff=res["diff"])
        row["note"] = res["note"]
    if not full.all():
        row["note"] = "; ".join(
            n
            for n in (row["note"], f"run means over the {int(full.sum())} of {full.size} seeds")
            if n
        )
    return {**row, "seeds": int(full.sum())}


def run_means_row(means_a: Sequence[float], means_b: Sequence[float]) -> dict[str, Any]:
    """The run-unit statistics of one group from each arm's run means (one value per run).

    Returns ``runs_a, runs_b, mean_a, mean_b, mean_diff, ci_low, ci_high, p, df, mdd80,
    run_pairs, run_pairs_agree, p_agree, note`` (see :mod:`sarfewshot.results.runstats`).
    """
    means_a, means_b = np.asarray(means_a, dtype=float), np.asarray(means_b, dtype=float)
    res = run_means_test(means_a, means_b)
    agree = agreement(means_a, means_b)
    return {
        "runs_a": len(means_a),
        "runs_b": len(means_b),
        "mean_a": float(means_a.mean()),
        "mean_b": float(means_b.mean()),
        "mean_diff": res["diff"],
        "ci_low": res["ci_low"],
        "ci_high": res["ci_high"],
        "p": res["p"],
        "df": res["df"],
        "mdd80": mdd_run_means(means_a, means_b),
        "run_pairs": agree["pairings"],
        "run_pairs_agree": agree["agree"],
        "p_agree": agree["p"],
        "note": res["note"],
    }


def run_compare(
    records: Iterable[Mapping[str, Any]],
    a: str,
    b: str,
    *,
    adjust: str = "holm",
    run_test: str = "means",
    family: Sequence[Sequence[str]] | None = None,
    allow_unknown_split: bool = False,
    allow_data_change: bool = False,
) -> dict[str, Any]:
    """acc(a) - acc(b) per (dataset, protocol, shots) group, the pretraining run as the unit.

    Args:
        records: records from any number of run folders (duplicates are merged first).
        a, b: backbone names (every weights file of the name is one run) or ``NAME@HASH``
            (a single run).
        adjust: ``holm``, ``bh`` or ``none`` over the groups, or over ``family``.
        run_test: ``means`` (two-sample t on run means) or ``mixedlm``.
        family: a pre-registered family of (a, b, dataset, protocol, shots) comparisons.
        allow_unknown_split: also use cells without a split hash, trusting the seed.
        allow_data_change: also use cells computed on other versions of the dataset folder
            (other fingerprints); the result's ``data_change`` then says so.

    Returns:
        ``{"a", "b", "adjust", "run_test", "test", "family_size", "seen_a", "seen_b",
        "groups": [{"dataset", "protocol", "shots", <run_unit_row>, "seen_a", "seen_b",
        "p_adj"}, ...], "data_change": note or ""}``; ``seen_*``: the most scored images any
        run of that arm saw in pretraining (None: unknown).

    Raises:
        SarFewShotError: unknown backbone, test or adjustment, weights on both sides, no group
            both arms have, or cells of two versions of a dataset folder without
            ``allow_data_change``.
    """
    _check_options(adjust, bootstrap=0)
    kept, _ = deduplicate(records)
    refuse_shared_weights(kept, a, b)
    label_a, runs_a = _runs(kept, a, "--a")
    label_b, runs_b = _runs(kept, b, "--b")
    tables, mixed = _tables(runs_a, runs_b, allow_unknown_split)
    if mixed and not allow_data_change:
        raise _version_error(mixed, a, b)
    if not tables:
        raise SarFewShotError(
            f"--a {a} and --b {b} share no (dataset, protocol, shots, seed) cell on one split file"
        )
    groups = [
        {
            **dict(zip(CELL_FIELDS[:3], group)),
            **run_unit_row(ta, tb, run_test),
            "seen_a": _group_seen(runs_a, group, seeds),
            "seen_b": _group_seen(runs_b, group, seeds),
        }
        for group, (seeds, ta, tb) in tables.items()
    ]
    size = family_size(family, (a, b, label_a, label_b), groups)
    _adjust_groups(groups, adjust, size, tests=("p",))
    return {
        "a": label_a,
        "b": label_b,
        "adjust": adjust,
        "run_test": run_test,
        "test": RUN_TESTS[run_test],
        "family_size": size,
        **_seen(groups),
        "groups": groups,
        "data_change": _versions_note(mixed) if mixed else "",
    }
