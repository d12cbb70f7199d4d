"""The board: every part of a leaderboard as plain data, ready for the page template.

:func:`build_board` reads records with the leaderboard's rules (it calls
:func:`~sarfewshot.results.aggregate.aggregate_records`: de-duplication, separate marked rows for
other configs or dataset versions, diverged cells counted and left out) and returns a dict that
:mod:`sarfewshot.results.board_page` renders. Nothing here writes HTML.

Test conditions: a record may carry a ``condition`` (top level or in its ``key``; a name, or an
object with a ``name``). Records without one, or with ``clean`` / ``in-distribution`` / ``none``,
are the in-distribution cells. Each condition is aggregated on its own, so cells of two
conditions never merge, and the robustness table gives each condition's drop from
in-distribution.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Mapping, Sequence

from sarfewshot.errors import SarFewShotError
from sarfewshot.results.aggregate import Row, aggregate_records, deduplicate
from sarfewshot.results.compare import available_labels, paired_compare
from sarfewshot.results.export import ambiguous_backbones, row_label, shots_text, table_caption
from sarfewshot.results.plots import mean_confusion
from sarfewshot.results.records import ID_CONDITION, condition_of, setting_of
from sarfewshot.results.robustness import RobustnessRow, robustness_rows

__all__ = ["IN_DISTRIBUTION", "build_board", "record_condition"]

IN_DISTRIBUTION = "in-distribution"
ADJUST = "holm"
MAX_AUTO_REFERENCES = 6


# ----------------------------------------------------------------------------- conditions


def record_condition(record: Mapping[str, Any]) -> str:
    """The test condition of a record (:func:`~sarfewshot.results.records.condition_of`), with
    ``id`` spelled :data:`IN_DISTRIBUTION` for readers of the page."""
    cond = condition_of(record)
    return IN_DISTRIBUTION if cond == ID_CONDITION else cond


def _row_dataset(row: Row) -> str:
    """A row's dataset column: the setting of ``--conditions`` records (their key's dataset
    is ``<setting>:<condition>``), so one setting's conditions sit side by side."""
    cells = list(row.cells)
    return setting_of(cells[0]) if cells else row.dataset


def _condition_order(cond: str) -> tuple[bool, str]:
    return (cond != IN_DISTRIBUTION, cond)


def _partition(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    parts: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        parts.setdefault(record_condition(rec), []).append(rec)
    return {c: parts[c] for c in sorted(parts, key=_condition_order)}


# ----------------------------------------------------------------------------- numbers


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _per_class(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per class: the mean accuracy over the seeds that report it, and that count."""
    names: list[str] = []
    values: dict[str, list[float]] = {}
    for rec in cells:
        for name, acc in (rec["metrics"].get("per_class_accuracy") or {}).items():
            if name not in values:
                names.append(name)
            values.setdefault(name, []).append(float(acc))
    return [{"name": n, "acc": _round(_mean(values[n])), "n": len(values[n])} for n in names]


def _confusion(cells: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The seed-averaged confusion matrix, or None (none recorded, or different classes)."""
    try:
        cmat, names = mean_confusion(cells)
    except SarFewShotError:
        return None
    return {"classes": names, "matrix": [[_round(v) for v in line] for line in cmat]}


def _cell(row: Row, detail: int) -> dict[str, Any]:
    return {
        "mean": _round(row.acc_mean),
        "std": _round(row.acc_std),
        "ci95": _round(row.acc_ci95),
        "n": row.n_seeds,
        "failed": row.n_failed,
        "diverged": row.n_diverged,
        "short": row.short_support,
        "missing": row.missing_classes,
        "seen": bool(row.contamination_seen),
        "detail": detail,
    }


# ----------------------------------------------------------------------------- provenance


def _distinct(values: Iterable[Any]) -> list[str]:
    return sorted({str(v) for v in values if v not in (None, "")})


def _fingerprint(record: Mapping[str, Any]) -> str:
    """``dataset: sha256`` of the dataset folder a record was computed on (``unknown`` for
    records written before fingerprints existed)."""
    fingerprint = (record.get("dataset") or {}).get("fingerprint") or {}
    return f"{record['key']['dataset']}: {fingerprint.get('sha256') or 'unknown'}"


def _provenance(cells: Sequence[Mapping[str, Any]], rows: Sequence[Row]) -> dict[str, list[str]]:
    """What produced a row's numbers: every distinct value over its counted cells."""
    return {
        "weights sha256": _distinct(c["key"]["weights_sha256"] or "none" for c in cells),
        "weights source": _distinct(c["backbone"].get("weights") or "none" for c in cells),
        "dataset fingerprint": _distinct(_fingerprint(c) for c in cells),
        "config sha256": _distinct(r.config_sha256 for r in rows),
        "precision": _distinct(
            c["backbone"].get("precision")
            or ((c.get("config") or {}).get("MODEL") or {}).get("PRECISION")
            for c in cells
        ),
        "executor": _distinct((c.get("execution") or {}).get("executor") for c in cells),
        "sarfewshot": _distinct(c["versions"].get("sarfewshot") for c in cells),
        "torch": _distinct(c["versions"].get("torch") for c in cells),
        "timm": _distinct(c["versions"].get("timm") for c in cells),
        "host": _distinct(c.get("host") for c in cells),
        "device": _distinct(c.get("device") for c in cells),
        "source": _distinct(r.source for r in rows),
    }


# ----------------------------------------------------------------------------- board


def _columns(rows_by_cond: Mapping[str, Sequence[Row]]) -> list[dict[str, Any]]:
    found = {(_row_dataset(r), cond, r.shots) for cond, rows in rows_by_cond.items() for r in rows}
    # K = all (-1, the whole train pool) after the numbered Ks, as in the leaderboard
    ordered = sorted(found, key=lambda c: (c[0], _condition_order(c[1]), c[2] < 0, c[2]))
    return [{"dataset": d, "condition": c, "shots": k} for d, c, k in ordered]


def _detail(row: Row, label: str, cond: str) -> dict[str, Any]:
    cells = list(row.cells)
    where = "" if cond == IN_DISTRIBUTION else f" · {cond}"
    k = shots_text(row.shots)
    return {
        "title": f"{label} · {row.protocol} · {_row_dataset(row)}{where} · K={k}",
        "per_class": _per_class(cells),
        "confusion": _confusion(cells),
        "seeds": [
            {
                "seed": c["key"]["seed"],
                "acc": _round(c["metrics"]["accuracy"], 4),
                "split": c["split"].get("sha256"),
            }
            for c in cells
        ],
    }


def _board_rows(
    rows_by_cond: Mapping[str, Sequence[Row]], columns: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The (backbone label, protocol) rows with their cells, and the per-cell details."""
    ambiguous = ambiguous_backbones([r for rows in rows_by_cond.values() for r in rows])
    col_index = {(c["dataset"], c["condition"], c["shots"]): i for i, c in enumerate(columns)}
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    details: list[dict[str, Any]] = []
    for cond, rows in rows_by_cond.items():
        for row in rows:
            label = row_label(row, ambiguous)
            line = lines.setdefault(
                (label, row.protocol),
                {"label": label, "backbone": row.backbone, "protocol": row.protocol,
                 "cells": [None] * len(columns), "rows": []},
            )  # fmt: skip
            line["rows"].append(row)
            line["cells"][col_index[(_row_dataset(row), cond, row.shots)]] = _cell(
                row, len(details)
            )
            details.append(_detail(row, label, cond))
    out = []
    for key in sorted(lines):
        line = lines[key]
        rows = line.pop("rows")
        line["provenance"] = _provenance([c for r in rows for c in r.cells], rows)
        out.append(line)
    return out, details


def _curves(board_rows: Sequence[Mapping[str, Any]], columns: Sequence[Mapping]) -> list[dict]:
    """One panel per (dataset, condition, protocol): a series per backbone label over K."""
    panels: dict[tuple, dict[str, list[dict]]] = {}
    for line in board_rows:
        for col, cell in zip(columns, line["cells"]):
            # K = all has no place on a K axis (the table holds it)
            if cell is None or cell["mean"] is None or col["shots"] < 0:
                continue
            panel = panels.setdefault((col["dataset"], col["condition"], line["protocol"]), {})
            half = cell["ci95"]
            panel.setdefault(line["label"], []).append(
                {
                    "k": col["shots"],
                    "mean": cell["mean"],
                    "low": None if half is None else _round(cell["mean"] - half),
                    "high": None if half is None else _round(cell["mean"] + half),
                    "n": cell["n"],
                }
            )
    return [
        {
            "dataset": d,
            "condition": c,
            "protocol": p,
            "series": [{"label": lab, "points": pts} for lab, pts in sorted(series.items())],
        }
        for (d, c, p), series in sorted(panels.items(), key=lambda kv: _panel_order(kv[0]))
    ]


def _panel_order(key: tuple) -> tuple:
    return (key[0], _condition_order(key[1]), key[2])


def _not_counted(
    parts: Mapping[str, Sequence[Mapping[str, Any]]], include_diverged: bool
) -> list[dict]:
    """The failed (and, unless counted, diverged) cells: left out of the means, listed."""
    kept = [r for recs in parts.values() for r in deduplicate(recs)[0]]
    skip = ("failed",) if include_diverged else ("failed", "diverged")
    out = [
        {
            "backbone": r["key"]["backbone"],
            "dataset": r["key"]["dataset"],
            "condition": record_condition(r),
            "protocol": r["key"]["protocol"],
            "shots": r["key"]["shots"],
            "seed": r["key"]["seed"],
            "status": r["status"],
            "error": r.get("error") or "",
        }
        for r in kept
        if r["status"] in skip
    ]
    return sorted(out, key=lambda d: tuple(str(v) for v in d.values()))


# ----------------------------------------------------------------------------- comparisons


def _label_name(label: str, records_by_name: Mapping[str, Any]) -> str:
    if label in records_by_name:
        return label
    return label.rpartition("@")[0]


def _significant(group: Mapping[str, Any]) -> bool:
    p = group.get("p_t_adj")
    return p is not None and p < 0.05


def _compare_pair(records: Sequence[Mapping[str, Any]], a: str, ref: str) -> dict[str, Any]:
    """``paired_compare(a, ref)`` (Holm), kept to what the page shows; errors as a message."""
    try:
        res = paired_compare(records, a, ref, adjust=ADJUST)
    except SarFewShotError as exc:
        return {"against": a, "error": str(exc), "groups": []}
    keep = ("dataset", "protocol", "shots", "n", "mean_a", "mean_b", "mean_diff", "ci_low",
            "ci_high", "p_t", "p_t_adj", "p_wilcoxon", "p_wilcoxon_adj", "note")  # fmt: skip
    groups = [{k: g.get(k) for k in keep} | {"significant": _significant(g)} for g in res["groups"]]
    return {"against": res["a"], "error": None, "groups": groups}


def _comparisons(
    parts: Mapping[str, Sequence[Mapping[str, Any]]], references: Sequence[str]
) -> list[dict[str, Any]]:
    """Per condition and reference: each other backbone's paired differences to it."""
    out = []
    for cond, records in parts.items():
        by_name: dict[str, list[Mapping[str, Any]]] = {}
        for rec in records:
            by_name.setdefault(rec["key"]["backbone"], []).append(rec)
        labels = available_labels(records)
        for ref in references:
            if ref not in labels:
                continue
            ref_recs = by_name[_label_name(ref, by_name)]
            pairs = []
            for other in labels:
                if other == ref:
                    continue
                name = _label_name(other, by_name)
                mine = ref_recs if name == _label_name(ref, by_name) else ref_recs + by_name[name]
                pairs.append(_compare_pair(mine, other, ref))
            out.append({"reference": ref, "condition": cond, "pairs": pairs})
    return out


def default_references(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every backbone when there are at most :data:`MAX_AUTO_REFERENCES`, else the first."""
    labels = available_labels(records)
    return labels if len(labels) <= MAX_AUTO_REFERENCES else labels[:1]


# ----------------------------------------------------------------------------- robustness


def _robustness(
    records: Sequence[Mapping[str, Any]], include_diverged: bool
) -> dict[str, Any] | None:
    """The leaderboard's robustness table (:mod:`sarfewshot.results.robustness`) as page data:
    per (backbone, protocol, setting, K) the in-distribution mean, each condition's mean and its
    drop ``acc(id) - acc(condition)`` with the paired interval over seeds. None without
    conditions."""
    rows = robustness_rows(records, include_diverged)
    conditions = sorted({r.condition for r in rows} - {ID_CONDITION})
    if not conditions:
        return None
    groups: dict[tuple, dict[str, RobustnessRow]] = {}
    for r in rows:
        groups.setdefault((r.backbone, r.protocol, r.setting, r.shots), {})[r.condition] = r
    lines = []
    for (label, protocol, setting, shots), by_cond in groups.items():
        clean = by_cond.get(ID_CONDITION)
        values = [_drop_cell(by_cond.get(cond)) for cond in conditions]
        lines.append(
            {"label": label, "protocol": protocol, "dataset": setting, "shots": shots,
             "clean": clean and _round(clean.acc_mean), "values": values}
        )  # fmt: skip
    return {"conditions": conditions, "lines": lines}


def _drop_cell(row: RobustnessRow | None) -> dict[str, Any]:
    if row is None:
        return {"mean": None, "drop": None, "low": None, "high": None}
    return {
        "mean": _round(row.acc_mean),
        "drop": _round(row.drop),
        "low": _round(row.drop_ci_low),
        "high": _round(row.drop_ci_high),
    }


# ----------------------------------------------------------------------------- entry point


def build_board(
    records: Sequence[Mapping[str, Any]],
    *,
    references: Sequence[str] | None = None,
    include_diverged: bool = False,
    command: str = "",
) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data.

    Args:
        records: records of any number of run folders (as ``leaderboard`` loads them).
        references: backbones (``compare``'s spelling) to compare the others with; None: see
            :func:`default_references`; empty: no comparison.
        include_diverged: average diverged cells too (``leaderboard --include-diverged``).
        command: the command that regenerates the page (shown in its footer).

    Returns:
        ``{"columns", "rows", "details", "curves", "comparisons", "robustness", "not_counted",
        "notes", "warnings", "filters", "command", "n_records", "adjust"}``.

    Raises:
        SarFewShotError: no record, or a reference that names no backbone.
    """
    if not records:
        raise SarFewShotError("the board needs at least one record")
    refs = default_references(records) if references is None else list(references)
    known = available_labels(records)
    unknown = [r for r in refs if r not in known]
    if unknown:
        raise SarFewShotError(
            f"--reference {', '.join(unknown)}: no such backbone (known: {', '.join(known)})"
        )
    parts = _partition(records)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows_by_cond = {c: aggregate_records(recs, include_diverged) for c, recs in parts.items()}
        comparisons = _comparisons(parts, refs)
    columns = _columns(rows_by_cond)
    board_rows, details = _board_rows(rows_by_cond, columns)
    all_rows = [r for rows in rows_by_cond.values() for r in rows]
    return {
        "columns": columns,
        "rows": board_rows,
        "details": details,
        "curves": _curves(board_rows, columns),
        "comparisons": comparisons,
        "references": refs,
        "robustness": _robustness(records, include_diverged),
        "not_counted": _not_counted(parts, include_diverged),
        "notes": table_caption(all_rows),
        "warnings": sorted({str(w.message) for w in caught}),
        "filters": {
            "dataset": sorted({c["dataset"] for c in columns}),
            "shots": sorted({c["shots"] for c in columns}),
            "protocol": sorted({line["protocol"] for line in board_rows}),
            "backbone": sorted({line["label"] for line in board_rows}),
        },
        "has_conditions": any(c["condition"] != IN_DISTRIBUTION for c in columns),
        "command": command,
        "n_records": len(records),
        "adjust": ADJUST,
    }
