"""Paired comparison of two backbones over the cells both have.

Two cells pair when they share (dataset, protocol, shots, seed) and were trained and tested on
the same split file (equal ``split.sha256``). The difference is ``acc(a) - acc(b)`` in
percentage points; its 95 % interval is the paired Student-t one,
mean(d) ± t_{0.975, n-1} * sd(d) / sqrt(n). Per-(dataset, protocol, shots) groups are reported
with one overall line over every pair (which pools different settings, so read it as a
summary, not as a test of one setting).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from sarfewshot.errors import SarFewShotError
from sarfewshot.results.aggregate import deduplicate, summarize

__all__ = ["paired_compare", "parse_backbone_spec"]

CELL_FIELDS = ("dataset", "protocol", "shots", "seed")


def parse_backbone_spec(text: str) -> tuple[str, str | None]:
    """Split ``NAME[@SHA256PREFIX]`` (the prefix picks one checkpoint of a backbone name)."""
    name, _, sha = text.partition("@")
    return name, (sha.lower() or None)


def _select(records: Iterable[Mapping[str, Any]], spec: str, flag: str) -> dict[tuple, dict]:
    """The ok records of backbone ``spec``, by cell; errors name ``flag`` when ambiguous."""
    records = list(records)
    # A label such as ``random@irpe_vit_micro_patch8`` is a whole backbone name, not NAME@SHA.
    exact = any(r["key"]["backbone"] == spec for r in records)
    name, prefix = (spec, None) if exact else parse_backbone_spec(spec)
    mine = [
        r
        for r in records
        if r["key"]["backbone"] == name
        and (prefix is None or (r["key"]["weights_sha256"] or "").startswith(prefix))
    ]
    shas = sorted({str(r["key"]["weights_sha256"]) for r in mine})
    if not mine:
        raise SarFewShotError(f"{flag} {spec}: no records of that backbone")
    if len(shas) > 1:
        raise SarFewShotError(
            f"{flag} {spec}: several weights files ({', '.join(s[:12] for s in shas)}); "
            f"pick one as {name}@<sha256 prefix>"
        )
    by_cell: dict[tuple, dict] = {}
    for rec in mine:
        if rec["status"] != "ok":
            continue
        cell = tuple(rec["key"][f] for f in CELL_FIELDS)
        if cell in by_cell:
            raise SarFewShotError(
                f"{flag} {spec}: cell {dict(zip(CELL_FIELDS, cell))} was computed with "
                "several configs; compare run folders that hold one config per cell"
            )
        by_cell[cell] = dict(rec)
    return by_cell


def _stats(diffs: list[float]) -> dict[str, Any]:
    s = summarize(diffs)
    half = s.ci95_t
    return {
        "n": s.n,
        "mean_diff": s.mean,
        "std_diff": s.std_sample,
        "ci95": half,
        "ci_low": s.mean - half if half is not None else None,
        "ci_high": s.mean + half if half is not None else None,
    }


def _pair(
    cells_a: dict[tuple, dict], cells_b: dict[tuple, dict], allow_unknown_split: bool
) -> tuple[list[dict], dict[str, int]]:
    pairs, skipped = [], {"only_a": 0, "only_b": 0, "split_mismatch": 0, "unknown_split": 0}
    skipped["only_b"] = len(set(cells_b) - set(cells_a))
    for cell in sorted(cells_a, key=lambda c: tuple(str(x) for x in c)):
        ra, rb = cells_a[cell], cells_b.get(cell)
        if rb is None:
            skipped["only_a"] += 1
            continue
        sa, sb = ra["split"].get("sha256"), rb["split"].get("sha256")
        if sa is None and sb is None and not allow_unknown_split:
            skipped["unknown_split"] += 1
            continue
        if sa != sb:
            skipped["split_mismatch"] += 1
            continue
        acc_a, acc_b = ra["metrics"]["accuracy"], rb["metrics"]["accuracy"]
        pairs.append(
            {
                **dict(zip(CELL_FIELDS, cell)),
                "split_sha256": sa,
                "acc_a": acc_a,
                "acc_b": acc_b,
                "diff": acc_a - acc_b,
            }
        )
    return pairs, skipped


def paired_compare(
    records: Iterable[Mapping[str, Any]],
    a: str,
    b: str,
    *,
    allow_unknown_split: bool = False,
) -> dict[str, Any]:
    """Paired difference acc(a) - acc(b) over the cells both backbones have.

    Args:
        records: records from any number of run folders (duplicates are merged first).
        a, b: backbone names, optionally ``NAME@SHA256PREFIX``.
        allow_unknown_split: also pair cells whose split hash is unknown on both sides (records
            read from Dassl logs), trusting that the same seed drew the same split.

    Returns:
        ``{"a", "b", "n", "mean_diff", "std_diff", "ci95", "ci_low", "ci_high",
        "groups": [{"dataset", "protocol", "shots", "mean_a", "mean_b", <stats>}, ...],
        "cells": [{"dataset", "protocol", "shots", "seed", "split_sha256", "acc_a", "acc_b",
        "diff"}, ...], "skipped": {"only_a", "only_b", "split_mismatch", "unknown_split"}}``.
        ``ci95`` is None when there is a single pair.

    Raises:
        SarFewShotError: unknown or ambiguous backbone, or no cell pairs.
    """
    kept, _ = deduplicate(records)
    pairs, skipped = _pair(_select(kept, a, "--a"), _select(kept, b, "--b"), allow_unknown_split)
    if not pairs:
        raise SarFewShotError(
            f"--a {a} and --b {b} share no cell with the same dataset, protocol, shots, seed "
            f"and split file (skipped: {skipped})"
        )
    groups: dict[tuple, list[dict]] = {}
    for p in pairs:
        groups.setdefault((p["dataset"], p["protocol"], p["shots"]), []).append(p)
    group_rows = []
    for (dataset, protocol, shots), ps in sorted(groups.items()):
        group_rows.append(
            {
                "dataset": dataset,
                "protocol": protocol,
                "shots": shots,
                "mean_a": summarize(p["acc_a"] for p in ps).mean,
                "mean_b": summarize(p["acc_b"] for p in ps).mean,
                **_stats([p["diff"] for p in ps]),
            }
        )
    return {
        "a": a,
        "b": b,
        **_stats([p["diff"] for p in pairs]),
        "groups": group_rows,
        "cells": pairs,
        "skipped": skipped,
    }
