"""Leaderboard output: the printed table, CSV, Markdown and LaTeX.

The table has one row per (backbone, protocol) and one column per (dataset, K), cells
``mean ± std (n)``, marked ``†`` when some class had fewer than K support images; ``std`` is the
population std (ddof 0) over seeds, which is what CoOp/Dassl scripts report. The CSV keeps one
line per leaderboard row with full float precision (``repr``), so it recomputes exactly from the
records.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from sarfewshot.results.aggregate import Row, row_sort_key
from sarfewshot.results.contamination import SEEN_MARK, SEEN_NOTE
from sarfewshot.results.labels import backbone_label
from sarfewshot.utils.io import PathLike, atomic_write_text

__all__ = [
    "CSV_COLUMNS",
    "table_caption",
    "table_text",
    "write_csv",
    "write_latex",
    "write_markdown",
]

CSV_COLUMNS = (
    "backbone",
    "weights_sha256",
    "dataset",
    "protocol",
    "shots",
    "n_seeds",
    "seeds",
    "acc_mean",
    "acc_std",
    "acc_std_sample",
    "acc_ci95",
    "acc_ci95_normal",
    "macro_f1_mean",
    "n_failed",
    "n_diverged",
    "n_unscored",
    "n_duplicates",
    "config_sha256",
    "config_conflict",
    "data_version",
    "data_conflict",
    "short_support",
    "contamination_seen",
    "contamination_method",
    "toolkit_version",
    "source",
    "dataset_variant",
    "missing_classes",
)
STD_CAPTION = "± = population std (ddof 0) over seeds, as CoOp/Dassl report; (n) = seeds"
PM = "±"
SHORT_MARK = "†"
MISSING_MARK = "‡"
MISSING_NOTE = (
    f"{MISSING_MARK}: computed with class folders missing (DATASET.SAR.ALLOW_MISSING_CLASSES; "
    "the records' dataset.missing_classes name them): not the benchmark's class set"
)
SHORT_NOTE = (
    f"{SHORT_MARK}: fewer than K support images in some class (DATASET.ALLOW_SHORT_CLASSES or "
    "DATASET.REPEAT; the records' split.support_counts give the real counts)"
)


# ----------------------------------------------------------------------------- layout


def row_label(row: Row, ambiguous: set[str]) -> str:
    """A row's backbone as tables and plots show it: ``NAME@HASH12`` when one name has several
    checkpoints (the spelling ``compare --a/--b`` takes, see :mod:`sarfewshot.results.labels`),
    the config hash on conflicting configs, the dataset fingerprint on cells from different
    versions of a dataset folder, ``*`` for Dassl-log rows."""
    label = backbone_label(row.backbone, row.weights_sha256, row.backbone in ambiguous)
    if row.config_conflict:
        # rows of several ATRNet-STAR settings differ in config: name the setting, not a hash
        what = f"{row.dataset_variant}, " if row.dataset_variant else ""
        label += f" {{{what}cfg {row.config_sha256[:8]}}}"
    if row.data_conflict:
        label += f" {{data {(row.data_version or 'unknown')[:8]}}}"
    if "dassl_log" in row.source:
        label += " *"
    return label


def ambiguous_backbones(rows: Sequence[Row]) -> set[str]:
    """Backbone names that appear with more than one weights file."""
    shas: dict[str, set] = {}
    for row in rows:
        shas.setdefault(row.backbone, set()).add(row.weights_sha256)
    return {name for name, s in shas.items() if len(s) > 1}


def _cell_text(row: Row, pm: str) -> str:
    failed = f", {row.n_failed} failed" if row.n_failed else ""
    failed += f", {row.n_diverged} diverged" if row.n_diverged else ""
    if row.acc_mean is None:
        return f"no result ({failed[2:]})"
    mark = f" {SHORT_MARK}" if row.short_support else ""
    mark += f" {MISSING_MARK}" if row.missing_classes else ""
    mark += f" {SEEN_MARK}" if row.contamination_seen else ""
    return f"{row.acc_mean:.2f} {pm} {row.acc_std:.2f} ({row.n_seeds}{failed}){mark}"


def common_img_size(rows: Sequence[Row]) -> int | None:
    """The input size most rows share, when the rows' sizes differ (None when they agree)."""
    sizes = Counter(r.img_size for r in rows if r.img_size is not None)
    return sizes.most_common(1)[0][0] if len(sizes) > 1 else None


def size_mark(row: Row, common: int | None) -> str:
    """`` [224 px]`` on a row whose input size differs from the most common one."""
    if common is None or row.img_size is None or row.img_size == common:
        return ""
    return f" [{row.img_size} px]"


def shots_text(shots: int) -> str:
    """K as tables print it: the number, or ``all`` for the whole train pool (K < 0)."""
    return "all" if int(shots) < 0 else str(shots)


def _pivot(rows: Sequence[Row], pm: str) -> tuple[list[str], list[list[str]]]:
    """Headers and body of the (backbone, protocol) x (dataset, K) table."""
    rows = sorted(rows, key=row_sort_key)
    ambiguous = ambiguous_backbones(rows)
    # K = -1 (the whole train pool) is the last column of its dataset, shown as K=all
    columns = sorted({(r.dataset, r.shots) for r in rows}, key=lambda c: (c[0], c[1] < 0, c[1]))
    col_index = {c: i for i, c in enumerate(columns)}
    common = common_img_size(rows)
    body: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        label = row_label(row, ambiguous) + size_mark(row, common)
        line = body.setdefault((label, row.protocol), [""] * len(columns))
        line[col_index[(row.dataset, row.shots)]] = _cell_text(row, pm)
    headers = ["backbone", "protocol"] + [f"{d} K={shots_text(k)}" for d, k in columns]
    return headers, [[b, p, *cells] for (b, p), cells in body.items()]


def table_caption(rows: Sequence[Row]) -> list[str]:
    """The notes printed under the table (std convention, flags present in ``rows``)."""
    notes = [STD_CAPTION]
    if any(r.config_conflict for r in rows):
        notes.append(
            "{cfg xxxxxxxx}: cells of one key computed with different configs, "
            "shown separately (never averaged together)"
        )
    if any("dassl_log" in r.source for r in rows):
        notes.append("*: read from Dassl log.txt files (one-decimal accuracies)")
    if any(r.data_conflict for r in rows):
        notes.append(
            "{data xxxxxxxx}: cells of one key computed on different versions of the dataset "
            "folder (its fingerprint), shown separately (never averaged together)"
        )
    common = common_img_size(rows)
    if common is not None:
        notes.append(
            f"[N px]: network input size (INPUT.SIZE, --img-size) other than the {common} px of "
            "most rows; accuracies at different sizes are not directly comparable"
        )
    if any(r.short_support for r in rows):
        notes.append(SHORT_NOTE)
    if any(r.missing_classes for r in rows):
        notes.append(MISSING_NOTE)
    if any(r.contamination_seen for r in rows):
        notes.append(SEEN_NOTE)
    if any(r.n_failed for r in rows):
        notes.append("failed cells are counted, not averaged")
    if any(r.n_diverged for r in rows):
        notes.append(
            "diverged cells (loss non-finite or far above its start) are counted; they are "
            "averaged only with --include-diverged"
        )
    unscored = sum(r.n_unscored for r in rows)
    if unscored:
        notes.append(
            f"{unscored} diverged cell(s) stopped before they were scored (no metrics): "
            "counted among the diverged, not averaged even with --include-diverged"
        )
    dups = sum(r.n_duplicates for r in rows)
    if dups:
        notes.append(f"{dups} duplicate record(s) of the same cell were merged")
    return notes


def table_text(rows: Sequence[Row], fmt: str = "grid") -> str:
    """The leaderboard table as text, in any tabulate format, with its caption lines."""
    headers, body = _pivot(rows, PM)
    table = tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)
    return table + "\n" + "\n".join(table_caption(rows)) + "\n"


# ----------------------------------------------------------------------------- files


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form: float(text) == value exactly
    if isinstance(value, tuple):
        return ";".join(str(v) for v in value)
    return str(value)


def csv_text(rows: Sequence[Row]) -> str:
    """The CSV content of :func:`write_csv`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in sorted(rows, key=row_sort_key):
        writer.writerow([_csv_value(getattr(row, col)) for col in CSV_COLUMNS])
    return buf.getvalue()


def write_csv(rows: Sequence[Row], path: PathLike) -> Path:
    """Write one line per leaderboard row (columns :data:`CSV_COLUMNS`) atomically."""
    atomic_write_text(path, csv_text(rows))
    return Path(path)


def write_markdown(rows: Sequence[Row], path: PathLike, title: str | None = None) -> Path:
    """Write the table as GitHub Markdown, its caption as a list below it."""
    headers, body = _pivot(rows, PM)
    table = tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
    head = f"# {title}\n\n" if title else ""
    notes = "\n".join(f"- {note}" for note in table_caption(rows))
    atomic_write_text(path, f"{head}{table}\n\n{notes}\n")
    return Path(path)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    PM: r"$\pm$",
    SHORT_MARK: r"\dag{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters (and write ± as ``$\\pm$``)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_text(rows: Sequence[Row]) -> str:
    """The LaTeX ``tabular`` of :func:`write_latex`, caption lines as comments above it."""
    headers, body = _pivot(rows, PM)
    esc_head = [latex_escape(h) for h in headers]
    esc_body = [[latex_escape(c) for c in line] for line in body]
    # latex_raw: the cells are escaped above, tabulate must not escape them again.
    table = tabulate(esc_body, headers=esc_head, tablefmt="latex_raw", disable_numparse=True)
    notes = "".join(f"% {latex_escape(note)}\n" for note in table_caption(rows))
    return notes + table + "\n"


def write_latex(rows: Sequence[Row], path: PathLike) -> Path:
    """Write the table as a LaTeX ``tabular`` (escaped; ± as ``$\\pm$``)."""
    atomic_write_text(path, latex_text(rows))
    return Path(path)
