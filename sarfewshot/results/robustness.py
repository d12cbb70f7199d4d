"""The robustness table: accuracy per operating condition and the drop from in-distribution.

Records of ``sarfewshot eval --conditions`` carry a ``setting`` and a ``condition`` in their
key; a record without them (a plain run, an older record) reads as the in-distribution
condition ``id`` of the setting named by its dataset. Rows are grouped by (backbone, weights,
setting, protocol, K, config) and pivoted by condition: per condition the mean accuracy over
seeds (population std, as the leaderboard), and for every condition but ``id`` the drop
``acc(id) - acc(condition)`` in points (positive: worse under the condition), paired over the
seeds that have both records on the same split file, with its paired Student-t 95 % interval
(:func:`sarfewshot.results.compare.paired_stats`, the interval ``compare`` reports).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tabulate import tabulate

from sarfewshot.results.aggregate import deduplicate, summarize
from sarfewshot.results.compare import paired_stats
from sarfewshot.results.export import shots_text
from sarfewshot.results.labels import backbone_label
from sarfewshot.results.records import ID_CONDITION, condition_of, setting_of
from sarfewshot.utils.io import PathLike, atomic_write_text

__all__ = [
    "ROBUSTNESS_COLUMNS",
    "RobustnessRow",
    "has_conditions",
    "robustness_csv",
    "robustness_rows",
    "robustness_text",
    "write_robustness_csv",
]

ROBUSTNESS_COLUMNS = (
    "backbone",
    "setting",
    "protocol",
    "shots",
    "condition",
    "n_seeds",
    "acc_mean",
    "acc_std",
    "drop",
    "drop_ci_low",
    "drop_ci_high",
    "n_pairs",
)
CAPTION = (
    "drop = acc(id) - acc(condition) in points, mean over the seeds with both on one split "
    "file, [paired Student-t 95 % interval]; acc = mean ± population std over seeds"
)


@dataclass(frozen=True)
class RobustnessRow:
    """One (backbone, setting, protocol, K, condition) line of the robustness table."""

    backbone: str
    setting: str
    protocol: str
    shots: int
    condition: str
    n_seeds: int
    acc_mean: float
    acc_std: float
    drop: float | None
    drop_ci_low: float | None
    drop_ci_high: float | None
    n_pairs: int


def has_conditions(records: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any record was scored under a named condition (``eval --conditions``)."""
    return any("condition" in r["key"] for r in records)


def _group(record: Mapping[str, Any]) -> tuple:
    key = record["key"]
    return (
        key["backbone"],
        key["weights_sha256"],
        setting_of(record),
        key["protocol"],
        key["shots"],
        record["config_sha256"],
    )


def robustness_rows(
    records: Iterable[Mapping[str, Any]], include_diverged: bool = False
) -> list[RobustnessRow]:
    """The rows of every group, ``id`` first then the conditions in name order."""
    counted = ("ok", "diverged") if include_diverged else ("ok",)
    kept, _ = deduplicate(records)
    groups: dict[tuple, dict[str, dict[int, dict]]] = {}
    for rec in kept:
        if rec["status"] in counted and "accuracy" in rec["metrics"]:
            by_cond = groups.setdefault(_group(rec), {})
            by_cond.setdefault(condition_of(rec), {})[rec["key"]["seed"]] = rec
    shas: dict[str, set] = {}
    for name, sha, *_ in groups:
        shas.setdefault(name, set()).add(sha)
    rows = []
    for gkey in sorted(groups, key=_order):
        name, sha, setting, protocol, shots, _cfg = gkey
        label = backbone_label(name, sha, len(shas[name]) > 1)
        conds = groups[gkey]
        order = sorted(conds, key=lambda c: (c != ID_CONDITION, c))
        for cond in order:
            rows.append(_row((label, setting, protocol, shots), cond, conds))
    return rows


def _order(gkey: tuple) -> tuple:
    name, sha, setting, protocol, shots, cfg = gkey
    return (name, sha or "", setting, protocol, shots < 0, shots, cfg)  # K=all after the Ks


def _row(what: tuple, cond: str, conds: Mapping[str, Mapping[int, dict]]) -> RobustnessRow:
    cells = conds[cond]
    acc = summarize(r["metrics"]["accuracy"] for _, r in sorted(cells.items()))
    drop = None
    reference = conds.get(ID_CONDITION)
    if cond != ID_CONDITION and reference:
        seeds = [
            s
            for s in sorted(cells)
            if s in reference
            and reference[s]["split"].get("sha256") == cells[s]["split"].get("sha256")
        ]
        if seeds:
            drop = paired_stats(
                [reference[s]["metrics"]["accuracy"] for s in seeds],
                [cells[s]["metrics"]["accuracy"] for s in seeds],
            )
    return RobustnessRow(
        *what,
        condition=cond,
        n_seeds=acc.n,
        acc_mean=acc.mean,
        acc_std=acc.std_pop,
        drop=drop["mean_diff"] if drop else None,
        drop_ci_low=drop["ci_low"] if drop else None,
        drop_ci_high=drop["ci_high"] if drop else None,
        n_pairs=drop["n"] if drop else 0,
    )


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{round(value, 2) + 0.0:.2f}"  # + 0.0: a float-noise -0.00 prints as 0.00


def robustness_text(rows: Sequence[RobustnessRow], fmt: str = "grid") -> str:
    """The table as text (the CSV's columns, numbers to two decimals, K = -1 printed as
    ``all``) with its caption."""
    body = []
    for r in rows:
        values = [
            shots_text(r.shots) if c == "shots" else getattr(r, c) for c in ROBUSTNESS_COLUMNS
        ]
        body.append([_fmt(v) if isinstance(v, float) or v is None else str(v) for v in values])
    table = tabulate(body, headers=ROBUSTNESS_COLUMNS, tablefmt=fmt, disable_numparse=True)
    return f"{table}\n{CAPTION}\n"


def robustness_csv(rows: Sequence[RobustnessRow]) -> str:
    """The table as CSV (full float precision, empty where a value is undefined)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ROBUSTNESS_COLUMNS)
    for r in rows:
        values = [getattr(r, c) for c in ROBUSTNESS_COLUMNS]
        writer.writerow(
            ["" if v is None else repr(v) if isinstance(v, float) else v for v in values]
        )
    return buf.getvalue()


def write_robustness_csv(rows: Sequence[RobustnessRow], path: PathLike) -> Path:
    """Write :func:`robustness_csv` atomically."""
    atomic_write_text(path, robustness_csv(rows))
    return Path(path)
