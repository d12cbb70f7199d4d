"""Aggregation of per-cell records into leaderboard rows, and the statistics behind it.

Numbers follow CoOp's ``parse_test_res``: mean and *population* std (ddof 0) over seeds, and
its ``--ci95`` (1.96 * std / sqrt(n)). Rows also carry the sample std (ddof 1) and a Student-t
95 % half-width, t_{0.975, n-1} * std_sample / sqrt(n), which is the honest interval for the
3-6 seeds a few-shot grid has. The t quantile comes from ``scipy.stats.t``; sums use
``math.fsum`` so the numbers do not depend on the order the records were read in.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from sarfewshot.results import contamination
from sarfewshot.results.records import dataset_version, key_tuple, parse_created

__all__ = [
    "DuplicateRecordWarning",
    "Row",
    "VersionConflictWarning",
    "Summary",
    "aggregate_records",
    "deduplicate",
    "summarize",
]

GROUP_FIELDS = ("backbone", "weights_sha256", "dataset", "protocol", "shots")
METRIC_TOL = 1e-9


class DuplicateRecordWarning(UserWarning):
    """The same cell (key and config) was found several times with different metrics."""


class VersionConflictWarning(UserWarning):
    """Cells of one leaderboard row were computed with different configs or dataset versions."""


# ----------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Summary:
    """Mean and spread of one group's values (percent accuracies over seeds).

    Attributes:
        n: number of values.
        mean: arithmetic mean.
        std_pop: population std (ddof 0), as CoOp/Dassl report.
        std_sample: sample std (ddof 1); None when n == 1.
        ci95_t: Student-t 95 % half-width t_{0.975,n-1} * std_sample / sqrt(n); None when n == 1.
        ci95_normal: CoOp's ``--ci95``: 1.96 * std_pop / sqrt(n).
    """

    n: int
    mean: float
    std_pop: float
    std_sample: float | None
    ci95_t: float | None
    ci95_normal: float


def summarize(values: Iterable[float]) -> Summary:
    """Summarise values (see :class:`Summary`); raises ValueError when there are none."""
    # imported here: importing sarfewshot.results (the grid writes records) stays scipy-free
    from scipy import stats

    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        raise ValueError("summarize() needs at least one value")
    mean = math.fsum(vals) / n
    ss = math.fsum((v - mean) ** 2 for v in vals)
    std_pop = math.sqrt(ss / n)
    std_sample = math.sqrt(ss / (n - 1)) if n > 1 else None
    ci95_t = (
        float(stats.t.ppf(0.975, n - 1)) * std_sample / math.sqrt(n)
        if std_sample is not None
        else None
    )
    return Summary(n, mean, std_pop, std_sample, ci95_t, 1.96 * std_pop / math.sqrt(n))


# ----------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Row:
    """One leaderboard row: a (backbone, weights, dataset, protocol, shots, config, dataset
    version) group.

    Accuracy fields are percentages over the seeds with an ``ok`` record (plus ``diverged``
    ones when asked for); they are None when no cell counts. ``cells`` holds the counted
    records (for plots), not exported. ``data_version`` is the dataset fingerprint (None for
    records written before fingerprints existed, and for Dassl logs).
    ``short_support``: some counted cell had fewer than K support images in some class (its
    record's ``split.support_counts``, drawn with ``DATASET.ALLOW_SHORT_CLASSES`` or
    ``DATASET.REPEAT``). ``dataset_variant``: the dataset's setting and test subset where a
    plug-in has them (ATRNet-STAR: ``eoc_scene test_woodland``), else "". ``missing_classes``:
    some counted cell ran with class folders missing (``DATASET.SAR.ALLOW_MISSING_CLASSES``).
    """

    backbone: str
    weights_sha256: str | None
    dataset: str
    protocol: str
    shots: int
    config_sha256: str
    n_seeds: int
    seeds: tuple[int, ...]
    acc_mean: float | None
    acc_std: float | None
    acc_std_sample: float | None
    acc_ci95: float | None
    acc_ci95_normal: float | None
    macro_f1_mean: float | None
    n_failed: int
    n_duplicates: int
    config_conflict: bool
    toolkit_version: str
    source: str
    cells: tuple[dict, ...] = field(default=(), repr=False, compare=False)
    data_version: str | None = None
    data_conflict: bool = False
    n_diverged: int = 0
    short_support: bool = False
    dataset_variant: str = ""
    missing_classes: bool = False
    # diverged cells that --include-diverged would count but that stopped before they were
    # scored (no metrics): listed, never averaged
    n_unscored: int = 0
    # the most scored images any cell's backbone saw in pretraining (None: unknown)
    contamination_seen: int | None = None
    contamination_method: str = "unknown"
    img_size: int | None = None  # the cells' INPUT.SIZE (None: unknown, e.g. Dassl logs)


def _numeric_leaves(obj: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(_numeric_leaves(v, f"{prefix}.{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_numeric_leaves(v, f"{prefix}[{i}]"))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix] = float(obj)
    return out


def _metrics_agree(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    la, lb = _numeric_leaves(a), _numeric_leaves(b)
    if la.keys() != lb.keys():
        return False
    return all(abs(la[k] - lb[k]) <= METRIC_TOL for k in la)


def _preference(record: Mapping[str, Any]) -> tuple:
    # An ok record beats a failed one; among equals the newest wins.
    return (record["status"] == "ok", parse_created(record["created"]))


def _identity(record: Mapping[str, Any]) -> tuple:
    return (*key_tuple(record["key"]), record["config_sha256"], dataset_version(record))


def deduplicate(records: Iterable[Mapping[str, Any]]) -> tuple[list[dict], dict[tuple, int]]:
    """Keep one record per (cell key, config_sha256, dataset version).

    The kept record is an ok one when there is one, else the newest by ``created``. A
    :class:`DuplicateRecordWarning` is issued when ok duplicates disagree in any metric by more
    than 1e-9.

    Returns:
        The kept records (in first-seen order) and, per kept identity, how many extra copies
        were dropped.
    """
    kept: dict[tuple, dict] = {}
    dropped: dict[tuple, int] = {}
    for rec in records:
        ident = _identity(rec)
        old = kept.get(ident)
        if old is None:
            kept[ident] = dict(rec)
            continue
        dropped[ident] = dropped.get(ident, 0) + 1
        both_ok = old["status"] == "ok" and rec["status"] == "ok"
        if both_ok and not _metrics_agree(old["metrics"], rec["metrics"]):
            warnings.warn(
                f"duplicate records of cell {dict(rec['key'])} disagree in their metrics; "
                "keeping the newest",
                DuplicateRecordWarning,
                stacklevel=2,
            )
        if _preference(rec) > _preference(old):
            kept[ident] = dict(rec)
    return list(kept.values()), dropped


def _group_key(record: Mapping[str, Any]) -> tuple:
    return tuple(record["key"][f] for f in GROUP_FIELDS)


def _join(values: Iterable[Any]) -> str:
    return ",".join(sorted({str(v) for v in values if v is not None})) or "unknown"


def _short_support(record: Mapping[str, Any]) -> bool:
    """Whether a record's split gave some class fewer than K support images."""
    counts = (record.get("split") or {}).get("support_counts") or {}
    shots = record["key"]["shots"]
    return shots > 0 and any(int(n) < shots for n in counts.values())


def dataset_variant(record: Mapping[str, Any]) -> str:
    """The setting and test subset a record's dataset was read with ("" when it has none)."""
    sar = ((record.get("config") or {}).get("DATASET") or {}).get("SAR") or {}
    setting = sar.get("ATRNET_SETTING") if record["key"]["dataset"] == "atrnet_star" else None
    subset = sar.get("ATRNET_TEST_SUBSET") or ""
    return f"{setting}" + (f" test_{subset}" if subset else "") if setting else ""


def _img_size(records: Sequence[Mapping[str, Any]]) -> int | None:
    """The cells' network input size (``config.INPUT.SIZE``), when every record states one."""
    sizes = set()
    for r in records:
        size = ((r.get("config") or {}).get("INPUT") or {}).get("SIZE")
        if isinstance(size, (list, tuple)):  # (H, W): the height stands for the pair
            size = size[0] if size else None
        sizes.add(size if isinstance(size, int) else None)
    return sizes.pop() if len(sizes) == 1 else None


def _build_row(
    gkey: tuple,
    variant: tuple[str, str | None],
    recs: Sequence[dict],
    n_dup: int,
    conflicts: tuple[bool, bool],
    counted: tuple[str, ...] = ("ok",),
) -> Row:
    cfg, data = variant
    asked = [r for r in recs if r["status"] in counted]
    # a cell whose loss went non-finite stops before scoring: its record has no metrics
    scored = [r for r in asked if "accuracy" in (r.get("metrics") or {})]
    ok = sorted(scored, key=lambda r: r["key"]["seed"])
    acc = summarize(r["metrics"]["accuracy"] for r in ok) if ok else None
    f1 = [r["metrics"]["macro_f1"] for r in ok if "macro_f1" in r["metrics"]]
    return Row(
        **dict(zip(GROUP_FIELDS, gkey)),
        config_sha256=cfg,
        n_seeds=len(ok),
        seeds=tuple(r["key"]["seed"] for r in ok),
        acc_mean=acc.mean if acc else None,
        acc_std=acc.std_pop if acc else None,
        acc_std_sample=acc.std_sample if acc else None,
        acc_ci95=acc.ci95_t if acc else None,
        acc_ci95_normal=acc.ci95_normal if acc else None,
        macro_f1_mean=math.fsum(f1) / len(f1) if f1 and len(f1) == len(ok) else None,
        n_failed=sum(r["status"] == "failed" for r in recs),
        n_duplicates=n_dup,
        config_conflict=conflicts[0],
        toolkit_version=_join(r.get("versions", {}).get("sarfewshot") for r in recs),
        source=_join(r.get("source", "sarfewshot") for r in recs),
        cells=tuple(ok),
        data_version=data,
        data_conflict=conflicts[1],
        n_diverged=sum(r["status"] == "diverged" for r in recs),
        short_support=any(_short_support(r) for r in ok),
        dataset_variant=",".join(sorted({dataset_variant(r) for r in recs} - {""})),
        missing_classes=any((r.get("dataset") or {}).get("missing_classes") for r in ok),
        n_unscored=len(asked) - len(scored),
        contamination_seen=contamination.seen_max(ok),
        contamination_method=contamination.methods(ok) if ok else "unknown",
        img_size=_img_size(recs),
    )


def row_sort_key(row: Row) -> tuple:
    """Deterministic row order: backbone, weights, protocol, dataset, shots, config."""
    return (
        row.backbone,
        row.weights_sha256 or "",
        row.protocol,
        row.dataset,
        row.shots,
        row.config_sha256,
        row.data_version or "",
    )


def aggregate_records(
    records: Iterable[Mapping[str, Any]], include_diverged: bool = False
) -> list[Row]:
    """Merge records (from any number of run folders) into leaderboard rows.

    Records are de-duplicated (:func:`deduplicate`), then grouped by (backbone, weights_sha256,
    dataset, protocol, shots), config_sha256 and dataset version. A group whose cells were
    computed with more than one config, or on more than one version of the dataset folder,
    yields one row per variant, each flagged (``config_conflict``, ``data_conflict``) and
    announced by a :class:`VersionConflictWarning`: they are never averaged together. Failed
    cells are counted in ``n_failed``, diverged ones in ``n_diverged``; neither is averaged
    unless ``include_diverged`` counts the diverged ones, and then only those that were scored
    (the others, with no metrics, are counted in ``n_unscored``).

    Returns:
        Rows sorted by :func:`row_sort_key`.
    """
    kept, dropped = deduplicate(records)
    groups: dict[tuple, dict[tuple, list[dict]]] = {}
    n_dup: dict[tuple, int] = {}
    for rec in kept:
        gkey, variant = _group_key(rec), (rec["config_sha256"], dataset_version(rec))
        groups.setdefault(gkey, {}).setdefault(variant, []).append(rec)
        n_dup[(gkey, variant)] = n_dup.get((gkey, variant), 0) + dropped.get(_identity(rec), 0)
    counted = ("ok", "diverged") if include_diverged else ("ok",)
    rows = []
    for gkey, variants in groups.items():
        conflicts = _conflicts(gkey, variants)
        for variant, recs in variants.items():
            rows.append(_build_row(gkey, variant, recs, n_dup[(gkey, variant)], conflicts, counted))
    return sorted(rows, key=row_sort_key)


def _conflicts(gkey: tuple, variants: Mapping[tuple, Any]) -> tuple[bool, bool]:
    """Whether a group's cells differ in config and in dataset version (warned once each)."""
    configs = {cfg for cfg, _ in variants}
    versions = {data for _, data in variants}
    what = dict(zip(GROUP_FIELDS, gkey))
    label = f"{what['backbone']} {what['dataset']} {what['protocol']} K={what['shots']}"
    if len(versions) > 1:
        warnings.warn(
            f"{label}: cells were computed on {len(versions)} versions of the dataset folder; "
            "shown as separate rows marked {data ...}, never averaged together",
            VersionConflictWarning,
            stacklevel=3,
        )
    return len(configs) > 1, len(versions) > 1
