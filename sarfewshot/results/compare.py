"""Paired comparison of two backbones over the cells both have.

Two cells pair when they share (dataset, protocol, shots, seed), were trained and tested on
the same split file (equal ``split.sha256``) and on the same version of the dataset folder
(equal fingerprints). Split files name chips, not their bytes: after a chip is replaced in
place, the split files still agree while the test sets differ, so cells of two versions are
refused unless the caller opts in (``allow_data_change``), and then every line says so. The
difference is ``acc(a) - acc(b)`` in percentage points. Per (dataset, protocol, shots) group,
and once over every pair, it reports:

- the paired Student-t 95 % interval, mean(d) ± t_{0.975, n-1} * sd(d) / sqrt(n);
- two-sided p-values of the paired t-test (``scipy.stats.ttest_rel``) and of the Wilcoxon
  signed-rank test (``scipy.stats.wilcoxon``: zero differences dropped, exact for small n, so
  with n <= 5 non-zero differences its p is at least 2 / 2^n = 0.0625 and never below 0.05);
- those p-values adjusted over the groups of one call: Holm (family-wise error, the default),
  Benjamini-Hochberg (false discovery rate) or none;
- optionally a percentile bootstrap 95 % interval of the mean difference (``scipy.stats.
  bootstrap``, one seeded generator per group from :func:`sarfewshot.utils.seeding.numpy_rng`).

The overall line pools different settings and is not adjusted. Its cells are not independent:
the cells of one seed share their (nested) support sets across K and protocols, so its
interval and p-values are optimistic; read it as a summary, the groups as the tests.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from sarfewshot.errors import SarFewShotError
from sarfewshot.results.aggregate import deduplicate, summarize
from sarfewshot.results.contamination import methods as contamination_methods
from sarfewshot.results.contamination import seen_max
from sarfewshot.results.labels import backbone_label, parse_backbone_label, weights_match
from sarfewshot.results.records import dataset_version
from sarfewshot.results.runstats import mdd_paired
from sarfewshot.utils.seeding import numpy_rng

__all__ = [
    "ADJUST_METHODS",
    "adjust_pvalues",
    "family_size",
    "paired_compare",
    "paired_stats",
    "paired_tests",
    "read_family",
    "select_weights",
]

CELL_FIELDS = ("dataset", "protocol", "shots", "seed")
ADJUST_METHODS = ("holm", "bh", "none")
# scipy.stats is imported inside the functions that use it, so that importing
# sarfewshot.results (which the evaluation grid does to write records) stays light.
# Differences within this many points of each other (or of 0) are float noise of equal
# accuracies (e.g. 70.1 - 50.1 vs 20.0), not a spread.
ZERO_TOL = 1e-9


# ----------------------------------------------------------------------------- selection


def select_weights(
    records: Sequence[Mapping[str, Any]], spec: str, flag: str
) -> tuple[str, list[str], list[Mapping[str, Any]]]:
    """The backbone name of ``spec``, its weights hashes and its records; errors name ``flag``."""
    # A label such as ``random@irpe_vit_micro_patch8`` is a whole backbone name, not NAME@SHA.
    exact = any(r["key"]["backbone"] == spec for r in records)
    name, prefix = (spec, None) if exact else parse_backbone_label(spec)
    name = _weightless_name(records, name)
    mine = [
        r
        for r in records
        if r["key"]["backbone"] == name and weights_match(r["key"]["weights_sha256"], prefix)
    ]
    if not mine:
        raise SarFewShotError(
            f"{flag} {spec}: no records of that backbone; the records hold: "
            f"{', '.join(available_labels(records)) or 'none'} (after @: the weights sha256 "
            "prefix of a checkpoint, or the architecture of a weight-less backbone such as "
            "random@<arch>)"
        )
    return name, sorted({str(r["key"]["weights_sha256"]) for r in mine}), mine


def _select(
    records: Sequence[Mapping[str, Any]], spec: str, flag: str, pool: bool = False
) -> tuple[str, dict[tuple, dict]]:
    """The label and the ok records (by cell) of backbone ``spec``; errors name ``flag``.

    ``pool``: a name with several weights files (pretraining runs) gives one record per cell
    whose accuracy is the mean over the weights files, for the cells every file has on the
    same split file and dataset version.
    """
    name, shas, mine = select_weights(records, spec, flag)
    if pool and len(shas) > 1:
        return f"{name} (mean of {len(shas)} weights)", _pooled_cells(mine, shas, flag, spec)
    if len(shas) > 1:
        raise SarFewShotError(
            f"{flag} {spec}: several weights files ({', '.join(s[:12] for s in shas)}); "
            f"pick one as {name}@<sha256 prefix>, pass --pool to average them, or compare "
            "at the run unit (sarfewshot.results.runcompare.run_compare)"
        )
    return _label(records, name, mine[0]["key"]["weights_sha256"]), _by_cell(mine, flag, spec)


def refuse_shared_weights(records: Sequence[Mapping[str, Any]], a: str, b: str) -> None:
    """Refuse ``a`` and ``b`` that select one weights file of one backbone on both sides: that
    run would be compared with itself (``--a sarjepa --b sarjepa@HASH``, a name against itself)."""
    name_a, shas_a, _ = select_weights(records, a, "--a")
    name_b, shas_b, _ = select_weights(records, b, "--b")
    shared = sorted(set(shas_a) & set(shas_b)) if name_a == name_b else []
    if shared:
        raise SarFewShotError(
            f"--a {a} and --b {b} both select {name_a} weights "
            f"{', '.join(s[:12] for s in shared)}: a run cannot be compared with itself; "
            f"name disjoint weights as {name_a}@<sha256 prefix>"
        )


def _weightless_name(records: Sequence[Mapping[str, Any]], name: str) -> str:
    """``random`` -> ``random@<arch>`` when the records hold that name with one architecture."""
    if any(r["key"]["backbone"] == name for r in records):
        return name
    archs = {r["key"]["backbone"] for r in records if r["key"]["backbone"].startswith(name + "@")}
    return archs.pop() if len(archs) == 1 else name


def available_labels(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every backbone of ``records`` as the leaderboard prints it (``NAME`` or ``NAME@HASH``)."""
    shas: dict[str, set] = {}
    for r in records:
        shas.setdefault(r["key"]["backbone"], set()).add(r["key"]["weights_sha256"])
    return sorted(
        backbone_label(name, sha, len(found) > 1) for name, found in shas.items() for sha in found
    )


def _by_cell(mine: Sequence[Mapping[str, Any]], flag: str, spec: str) -> dict[tuple, dict]:
    """The ok records of one weights file by cell; a cell computed twice is an error."""
    by_cell: dict[tuple, dict] = {}
    for rec in mine:
        if rec["status"] != "ok":
            continue
        cell = tuple(rec["key"][f] for f in CELL_FIELDS)
        if cell in by_cell:
            raise SarFewShotError(
                f"{flag} {spec}: cell {dict(zip(CELL_FIELDS, cell))} was computed "
                f"{_twice_why(by_cell[cell], rec)}; compare run folders that hold one config "
                "and one dataset version per cell"
            )
        by_cell[cell] = dict(rec)
    return by_cell


def cells_per_weights(
    mine: Sequence[Mapping[str, Any]], shas: Sequence[str], flag: str, spec: str
) -> list[dict[tuple, dict]]:
    """Per weights file of ``shas`` (in that order), its ok records by cell (:func:`_by_cell`)."""
    return [
        _by_cell([r for r in mine if str(r["key"]["weights_sha256"]) == sha], flag, spec)
        for sha in shas
    ]


def _twice_why(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What tells two records of one cell apart: their configs or their dataset versions."""
    if old.get("config_sha256") == new.get("config_sha256"):
        versions = sorted(str(dataset_version(r))[:12] for r in (old, new))
        return f"on two versions of the dataset folder (fingerprints {', '.join(versions)})"
    return "with several configs"


def _pooled_cells(
    mine: Sequence[Mapping[str, Any]], shas: Sequence[str], flag: str, spec: str
) -> dict[tuple, dict]:
    """Per cell, the mean accuracy over the weights files that all have it on one split."""
    per_sha = cells_per_weights(mine, shas, flag, spec)
    pooled: dict[tuple, dict] = {}
    for cell in set.intersection(*(set(cells) for cells in per_sha)):
        recs = [cells[cell] for cells in per_sha]
        if len({r["split"].get("sha256") for r in recs}) != 1:
            continue  # not the same support set under every weights file
        if len({dataset_version(r) for r in recs}) != 1:
            continue  # not the same test set under every weights file
        accs = [float(r["metrics"]["accuracy"]) for r in recs]
        pooled[cell] = {
            **recs[0],
            "metrics": {"accuracy": float(np.mean(accs))},
            # the pooled cell stands for every run, so it saw what any of them saw
            "contamination": {"seen": seen_max(recs), "method": contamination_methods(recs)},
        }
    if not pooled:
        raise SarFewShotError(f"{flag} {spec} --pool: no cell that every weights file has")
    return pooled


def _label(records: Sequence[Mapping[str, Any]], name: str, sha: str | None) -> str:
    """The leaderboard's spelling: the hash shows when ``name`` has several weights files."""
    shas = {r["key"]["weights_sha256"] for r in records if r["key"]["backbone"] == name}
    return backbone_label(name, sha, len(shas) > 1)


# ----------------------------------------------------------------------------- statistics


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment: max over j <= i of (m - j + 1) * p_(j), capped at 1."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def adjust_pvalues(
    pvalues: Sequence[float | None], method: str, family_size: int | None = None
) -> list[float | None]:
    """Adjust a family of p-values for multiple testing; None entries stay None, uncounted.

    Args:
        pvalues: one p-value per test (None where the test was not defined).
        method: ``holm`` (family-wise error rate), ``bh`` (Benjamini-Hochberg false discovery
            rate, ``scipy.stats.false_discovery_control``) or ``none``.
        family_size: the size of a pre-registered family these tests belong to (at least the
            number of known p-values). Its members not given here count as p = 1, which can
            only raise the adjusted values: the adjustment stays valid whatever their p-values.
    """
    from scipy import stats

    if method not in ADJUST_METHODS:
        raise SarFewShotError(f"--adjust {method}: choose one of {', '.join(ADJUST_METHODS)}")
    known = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if not known:
        return out
    p = np.array([pvalues[i] for i in known], dtype=float)
    if family_size is not None and family_size < len(p):
        raise SarFewShotError(f"family of {family_size} tests, but {len(p)} p-values to adjust")
    p = np.concatenate([p, np.ones((family_size or len(p)) - len(p))])
    if method == "holm":
        p = _holm(p)
    elif method == "bh":
        p = stats.false_discovery_control(p, method="bh")
    for i, value in zip(known, p):
        out[i] = float(value)
    return out


def paired_tests(acc_a: Sequence[float], acc_b: Sequence[float]) -> dict[str, Any]:
    """Two-sided paired t-test and Wilcoxon signed-rank p-values of ``acc_a - acc_b``.

    Returns:
        ``{"p_t", "p_wilcoxon", "note"}``: a p-value is None where its test is undefined (t: a
        single pair, or differences without spread), with the reason in ``note``. All-zero
        differences give p = 1 for both.
    """
    from scipy import stats

    d = np.round(np.subtract(acc_a, acc_b, dtype=float), 9)  # float noise of equal accuracies
    if np.all(np.abs(d) <= ZERO_TOL):
        return {"p_t": 1.0, "p_wilcoxon": 1.0, "note": "all differences are 0"}
    notes, p_t = [], None
    if len(d) < 2:
        notes.append("t-test n/a: a single pair")
    elif np.ptp(d) <= ZERO_TOL:
        notes.append(f"t-test n/a: every difference is {d[0]:+.2f} (no spread)")
    else:
        p_t = float(stats.ttest_rel(acc_a, acc_b).pvalue)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p_w = float(stats.wilcoxon(d).pvalue)
    return {"p_t": p_t, "p_wilcoxon": p_w, "note": "; ".join(notes)}


def _bootstrap_kwargs(rng: np.random.Generator) -> dict[str, Any]:
    from scipy import stats

    # scipy >= 1.15 names the generator ``rng``; older releases call it ``random_state``.
    params = inspect.signature(stats.bootstrap).parameters
    return {"rng": rng} if "rng" in params else {"random_state": rng}


def bootstrap_interval(
    diffs: Sequence[float], n_resamples: int, rng: np.random.Generator
) -> tuple[float, float] | None:
    """Percentile bootstrap 95 % interval of the mean difference; None for a single pair."""
    from scipy import stats

    if len(diffs) < 2:
        return None
    res = stats.bootstrap(
        (np.asarray(diffs, dtype=float),),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=0.95,
        method="percentile",
        **_bootstrap_kwargs(rng),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _stats(pairs: Sequence[dict], n_boot: int, rng_keys: tuple) -> dict[str, Any]:
    """Interval, tests and (``n_boot`` > 0) bootstrap interval of some pairs' differences."""
    diffs = [p["diff"] for p in pairs]
    s = summarize(diffs)
    half = s.ci95_t
    boot = bootstrap_interval(diffs, n_boot, numpy_rng(*rng_keys)) if n_boot > 0 else None
    tests = paired_tests([p["acc_a"] for p in pairs], [p["acc_b"] for p in pairs])
    if n_boot > 0 and boot is None:
        tests["note"] = "; ".join(x for x in (tests["note"], "bootstrap n/a: a single pair") if x)
    return {
        "n": s.n,
        "mean_diff": s.mean,
        "std_diff": s.std_sample,
        "mdd80": mdd_paired(diffs) if s.n > 1 and (s.std_sample or 0) > 0 else None,
        "ci95": half,
        "ci_low": s.mean - half if half is not None else None,
        "ci_high": s.mean + half if half is not None else None,
        "boot_low": boot[0] if boot else None,
        "boot_high": boot[1] if boot else None,
        "p_t": tests["p_t"],
        "p_wilcoxon": tests["p_wilcoxon"],
        "note": tests["note"],
    }


def paired_stats(
    acc_a: Sequence[float], acc_b: Sequence[float], n_boot: int = 0, rng_keys: tuple = ()
) -> dict[str, Any]:
    """The paired statistics of ``acc_a - acc_b`` (cells paired by position): ``n``,
    ``mean_diff``, the Student-t 95 % interval ``ci_low``/``ci_high`` (None for one pair), the
    test p-values and (``n_boot`` > 0) the bootstrap interval, as :func:`paired_compare` gives
    per group."""
    pairs = [{"diff": a - b, "acc_a": a, "acc_b": b} for a, b in zip(acc_a, acc_b)]
    return _stats(pairs, n_boot, rng_keys)


# ----------------------------------------------------------------------------- family

FAMILY_FIELDS = ("a", "b", "dataset", "protocol", "shots")


def read_family(paths: Sequence[str]) -> list[tuple[str, ...]]:
    """The comparisons of a pre-registered family: CSV files with columns a,b,dataset,protocol,
    shots (one comparison per line; the union over the files, duplicates counted once).

    Raises:
        SarFewShotError: a missing file or column, naming ``--family``.
    """
    import csv

    family: dict[tuple[str, ...], None] = {}
    for path in paths:
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as err:
            raise SarFewShotError(f"--family {path}: {err.strerror or err}") from err
        for i, row in enumerate(rows, start=2):
            if any(not (row.get(k) or "").strip() for k in FAMILY_FIELDS):
                raise SarFewShotError(
                    f"--family {path} line {i}: needs the columns {','.join(FAMILY_FIELDS)}"
                )
            family[tuple(row[k].strip() for k in FAMILY_FIELDS)] = None
    if not family:
        raise SarFewShotError(f"--family {', '.join(paths)}: no comparison listed")
    return list(family)


def family_size(
    family: Sequence[Sequence[str]] | None, names: Sequence[str], groups: Sequence[Mapping]
) -> int:
    """How many tests the adjustment counts: the family's size, once every group is in it.

    ``names``: the spellings of (a, b) a family line may use (as given, or as labelled).
    """
    if family is None:
        return len(groups)
    keys = {tuple(str(x) for x in entry) for entry in family}
    a_names, b_names = set(names[0::2]), set(names[1::2])
    for g in groups:
        cell = (str(g["dataset"]), str(g["protocol"]), str(g["shots"]))
        if not any((a, b, *cell) in keys for a in a_names for b in b_names):
            raise SarFewShotError(
                f"--family: {names[0]} vs {names[1]} on {'/'.join(cell)} is not in the family; "
                "a pre-registered family lists every comparison it adjusts over"
            )
    return len(keys)


# ----------------------------------------------------------------------------- pairing


def _versions_note(mixed: Mapping[tuple, int]) -> str:
    """What a line says when it pairs cells of two dataset versions (``--allow-data-change``)."""
    parts = [f"{n} pair(s) {ds} {fa[:12]} vs {fb[:12]}" for (ds, fa, fb), n in mixed.items()]
    return "paired across dataset versions (--allow-data-change): " + ", ".join(parts)


def _version_error(mixed: Mapping[tuple, int], a: str, b: str) -> SarFewShotError:
    ds, fa, fb = next(iter(mixed))
    more = f" (and {len(mixed) - 1} more version pair(s))" if len(mixed) > 1 else ""
    n = sum(mixed.values())
    return SarFewShotError(
        f"--a {a} and --b {b}: {n} cell pair(s) of dataset '{ds}' were computed on different "
        f"versions of its folder (fingerprint {fa[:12]} for --a, {fb[:12]} for --b){more}; "
        "their test sets differ, so their differences are not paired. Rerun one side on the "
        "current folder, or pass --allow-data-change to pair them anyway"
    )


def _pair(
    cells_a: dict[tuple, dict], cells_b: dict[tuple, dict], allow_unknown_split: bool
) -> tuple[list[dict], dict[str, int], dict[tuple, int]]:
    """The pairs, the skipped counts and, per (dataset, version a, version b), the pairs whose
    dataset versions differ (both known)."""
    pairs, skipped = [], {"only_a": 0, "only_b": 0, "split_mismatch": 0, "unknown_split": 0}
    mixed: dict[tuple, int] = {}
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
        fa, fb = dataset_version(ra), dataset_version(rb)
        if fa and fb and fa != fb:
            mixed[(cell[0], fa, fb)] = mixed.get((cell[0], fa, fb), 0) + 1
        acc_a, acc_b = ra["metrics"]["accuracy"], rb["metrics"]["accuracy"]
        pairs.append(
            {
                **dict(zip(CELL_FIELDS, cell)),
                "split_sha256": sa,
                "data_versions": (fa, fb) if fa != fb else None,
                "acc_a": acc_a,
                "acc_b": acc_b,
                "diff": acc_a - acc_b,
                "seen_a": seen_max([ra]),
                "seen_b": seen_max([rb]),
            }
        )
    return pairs, skipped, mixed


def _seen(pairs: Sequence[dict]) -> dict[str, int | None]:
    """The most scored images either side's backbone saw in pretraining (None: unknown)."""
    out = {}
    for side in ("seen_a", "seen_b"):
        known = [p[side] for p in pairs if p[side] is not None]
        out[side] = max(known) if known else None
    return out


def _group_rows(pairs: Sequence[dict], n_boot: int, seed: int) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict]] = {}
    for p in pairs:
        groups.setdefault((p["dataset"], p["protocol"], p["shots"]), []).append(p)
    return [
        {
            "dataset": dataset,
            "protocol": protocol,
            "shots": shots,
            "mean_a": summarize(p["acc_a"] for p in ps).mean,
            "mean_b": summarize(p["acc_b"] for p in ps).mean,
            **_seen(ps),
            **_stats(ps, n_boot, (seed, "compare-bootstrap", dataset, protocol, shots)),
        }
        for (dataset, protocol, shots), ps in sorted(groups.items())
    ]


def paired_compare(
    records: Iterable[Mapping[str, Any]],
    a: str,
    b: str,
    *,
    allow_unknown_split: bool = False,
    allow_data_change: bool = False,
    adjust: str = "holm",
    bootstrap: int = 0,
    bootstrap_seed: int = 0,
    pool: bool = False,
    family: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Paired difference acc(a) - acc(b) over the cells both backbones have.

    Args:
        records: records from any number of run folders (duplicates are merged first).
        a, b: backbone labels as the leaderboard prints them: ``NAME`` or ``NAME@HASHPREFIX``
            (any prefix length; ``NAME@none``: the weight-less run of that name).
        allow_unknown_split: also pair cells whose split hash is unknown on both sides (records
            read from Dassl logs), trusting that the same seed drew the same split.
        allow_data_change: also pair cells computed on different versions of the dataset
            folder (different fingerprints); every line's ``note`` then says so.
        adjust: ``holm``, ``bh`` or ``none``: how the groups' p-values are adjusted.
        bootstrap: resamples of the bootstrap interval (0: none).
        bootstrap_seed: seed of the bootstrap generators (one per group).
        pool: a NAME with several weights files (e.g. pretraining seeds) stands for the mean
            accuracy over them, per cell that every file has on the same split file and
            dataset version. The interval then covers the support-set draws only, not the
            pretraining runs: it is conditional on the runs made.
        family: a pre-registered family of (a, b, dataset, protocol, shots) comparisons
            (:func:`read_family`) that the adjustment counts; every group of this call must be
            in it. None: the family is this call's groups.

    Returns:
        ``{"a", "b", "adjust", "bootstrap", "family_size", "pooled_runs", <stats of all
        pairs>, "groups": [{"dataset",
        "protocol", "shots", "mean_a", "mean_b", <stats>, "p_t_adj", "p_wilcoxon_adj"}, ...],
        "cells": [{"dataset", "protocol", "shots", "seed", "split_sha256", "acc_a", "acc_b",
        "diff", "data_versions"}, ...], "skipped": {"only_a", "only_b", "split_mismatch",
        "unknown_split"}, "data_change": note or ""}``,
        where <stats> is ``n, mean_diff, std_diff, mdd80, ci95, ci_low, ci_high, boot_low,
        boot_high, p_t, p_wilcoxon, note``; ``a``/``b`` are the leaderboard's labels.
        Undefined numbers (an interval of a single pair, a test without spread) are None.

    Raises:
        SarFewShotError: unknown or ambiguous backbone, unknown ``adjust``, no cell pairs, or
            pairs computed on two versions of a dataset folder without ``allow_data_change``
            (the message names both fingerprints).
    """
    _check_options(adjust, bootstrap)
    label_a, label_b, pairs, skipped, mixed = _paired_cells(
        records, a, b, pool, allow_unknown_split, allow_data_change
    )
    groups = _group_rows(pairs, bootstrap, bootstrap_seed)
    size = family_size(family, (a, b, label_a, label_b), groups)
    _mark_data_change(groups, pairs)
    _adjust_groups(groups, adjust, size)
    return {
        "a": label_a,
        "b": label_b,
        "adjust": adjust,
        "bootstrap": bootstrap,
        "family_size": size,
        "pooled_runs": pool and "mean of" in label_a + label_b,
        **_stats(pairs, bootstrap, (bootstrap_seed, "compare-bootstrap", "ALL")),
        **_seen(pairs),
        "groups": groups,
        "cells": pairs,
        "skipped": skipped,
        "data_change": _versions_note(mixed) if mixed else "",
    }


def _check_options(adjust: str, bootstrap: int) -> None:
    """Refuse an unknown ``--adjust`` method or a negative ``--bootstrap`` count."""
    if adjust not in ADJUST_METHODS:
        raise SarFewShotError(f"--adjust {adjust}: choose one of {', '.join(ADJUST_METHODS)}")
    if bootstrap < 0:
        raise SarFewShotError(f"--bootstrap {bootstrap}: the number of resamples must be >= 0")


def _paired_cells(
    records: Iterable[Mapping[str, Any]],
    a: str,
    b: str,
    pool: bool,
    allow_unknown_split: bool,
    allow_data_change: bool,
) -> tuple[str, str, list[dict], dict[str, int], dict[tuple, int]]:
    """The two labels, the paired cells, the skip counts and the cross-version pairs of
    :func:`paired_compare`; refuses mixed dataset versions (unless allowed) and no pairs."""
    kept, _ = deduplicate(records)
    refuse_shared_weights(kept, a, b)
    label_a, cells_a = _select(kept, a, "--a", pool)
    label_b, cells_b = _select(kept, b, "--b", pool)
    pairs, skipped, mixed = _pair(cells_a, cells_b, allow_unknown_split)
    if mixed and not allow_data_change:
        raise _version_error(mixed, a, b)
    if not pairs:
        raise SarFewShotError(
            f"--a {a} and --b {b} share no cell with the same dataset, protocol, shots, seed "
            f"and split file (skipped: {skipped})"
        )
    return label_a, label_b, pairs, skipped, mixed


def _adjust_groups(
    groups: list[dict[str, Any]],
    adjust: str,
    size: int,
    tests: Sequence[str] = ("p_t", "p_wilcoxon"),
) -> None:
    """Add ``<test>_adj`` for each of ``tests`` (default ``p_t_adj`` and ``p_wilcoxon_adj``) to
    each group (a family of ``size`` tests)."""
    for test in tests:
        for g, adj in zip(groups, adjust_pvalues([g[test] for g in groups], adjust, size)):
            g[f"{test}_adj"] = adj


def _mark_data_change(groups: list[dict[str, Any]], pairs: Sequence[dict]) -> None:
    """Add the cross-version note to each group that pairs cells of two dataset versions."""
    for g in groups:
        mixed: dict[tuple, int] = {}
        for p in pairs:
            same = (p["dataset"], p["protocol"], p["shots"]) == (
                g["dataset"],
                g["protocol"],
                g["shots"],
            )
            if same and p["data_versions"]:
                key = (p["dataset"], *p["data_versions"])
                mixed[key] = mixed.get(key, 0) + 1
        if mixed:
            g["note"] = "; ".join(x for x in (g["note"], _versions_note(mixed)) if x)
