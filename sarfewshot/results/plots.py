"""Leaderboard pictures (needs the ``plots`` extra: matplotlib).

Figures are drawn with matplotlib's object API on the Agg canvas, so nothing touches pyplot's
global state or needs a display.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from sarfewshot.errors import SarFewShotError
from sarfewshot.results.aggregate import Row, row_sort_key
from sarfewshot.results.export import ambiguous_backbones, row_label, shots_text
from sarfewshot.utils.io import PathLike

__all__ = ["mean_confusion", "plot_confusion", "plot_confusions", "plot_shots"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
ANNOTATE_MAX_CLASSES = 20


class PlotsUnavailableError(SarFewShotError, ImportError):
    """matplotlib is not installed."""


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotsUnavailableError(
            "plots need matplotlib: pip install 'sarfewshot[plots]' (or pip install matplotlib)"
        ) from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _safe(text: str) -> str:
    return _SAFE.sub("-", str(text)).strip("-") or "x"


def plot_shots(rows: Sequence[Row], out_dir: PathLike) -> list[Path]:
    """Accuracy versus K, one curve per backbone with Student-t 95 % CI bars.

    One PNG per (dataset, protocol): ``<out_dir>/shots_<dataset>_<protocol>.png``. Groups with a
    single seed have no bar; groups where every cell failed are left out, and so are K = all
    rows (the whole train pool has no place on a K axis; the table holds them).

    Returns:
        The written paths, sorted.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in sorted(rows, key=row_sort_key) if r.acc_mean is not None and r.shots > 0]
    ambiguous = ambiguous_backbones(rows)
    panels: dict[tuple[str, str], dict[str, list[Row]]] = {}
    for r in rows:
        series = panels.setdefault((r.dataset, r.protocol), {})
        series.setdefault(row_label(r, ambiguous), []).append(r)
    paths = []
    for (dataset, protocol), series in sorted(panels.items()):
        path = out_dir / f"shots_{_safe(dataset)}_{_safe(protocol)}.png"
        _draw_shots(series, f"{dataset} · {protocol}", path)
        paths.append(path)
    return paths


def clipped_errors(means: Sequence[float], half_widths: Sequence[float]) -> list[list[float]]:
    """Lower and upper error-bar lengths, cut so that no bar leaves [0, 100] %.

    With 2 seeds the Student-t interval is wide (t = 12.7) and would reach below 0 %.
    """
    lower = [min(h, max(m, 0.0)) for m, h in zip(means, half_widths)]
    upper = [min(h, max(100.0 - m, 0.0)) for m, h in zip(means, half_widths)]
    return [lower, upper]


def _draw_shots(series: Mapping[str, list[Row]], title: str, path: Path) -> None:
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    all_shots: set[int] = set()
    for label, pts in sorted(series.items()):
        pts = sorted(pts, key=lambda r: r.shots)
        xs = [r.shots for r in pts]
        all_shots.update(xs)
        ys = [r.acc_mean for r in pts]
        err = clipped_errors(ys, [r.acc_ci95 or 0.0 for r in pts])
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
    low, high = ax.get_ylim()  # an accuracy lies in [0, 100]: so does the axis
    ax.set_ylim(max(low, 0.0), min(high, 100.0))
    ax.set_xticks(sorted(all_shots))
    ax.set_xlabel("shots per class (K)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    # Outside the axes: inside, the legend hid parts of the curves.
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.text(
        0.01, 0.01, "bars: Student-t 95 % CI over seeds, cut at 0 and 100 %", fontsize="x-small"
    )
    fig.savefig(path, bbox_inches="tight")


def mean_confusion(records: Sequence[Mapping[str, Any]]) -> tuple[list[list[float]], list[str]]:
    """Element-wise mean of the records' confusion matrices (same class list required).

    Raises:
        SarFewShotError: when no record has a confusion matrix or their classes differ.
    """
    mats = [r for r in records if r.get("metrics", {}).get("confusion_matrix")]
    if not mats:
        raise SarFewShotError("no record holds metrics.confusion_matrix")
    names = list(mats[0]["dataset"].get("classnames") or [])
    size = len(mats[0]["metrics"]["confusion_matrix"])
    for r in mats:
        if (
            list(r["dataset"].get("classnames") or []) != names
            or len(r["metrics"]["confusion_matrix"]) != size
        ):
            raise SarFewShotError(f"confusion matrices of {r['key']} use other classes")
    total = [[0.0] * size for _ in range(size)]
    for r in mats:
        for i, line in enumerate(r["metrics"]["confusion_matrix"]):
            for j, v in enumerate(line):
                total[i][j] += v / len(mats)
    return total, names or [str(i) for i in range(size)]


def _normalise_rows(cmat: Sequence[Sequence[float]]) -> list[list[float]]:
    out = []
    for line in cmat:
        s = float(sum(line))
        out.append([v / s if s else 0.0 for v in line])
    return out


def plot_confusion(
    source: Union[Mapping[str, Any], Sequence[Sequence[float]]],
    classnames: Sequence[str] | None,
    path: PathLike,
    *,
    title: str | None = None,
    normalize: bool = True,
) -> Path:
    """Draw a confusion matrix (rows: true class, columns: predicted) to a PNG.

    Args:
        source: a record (its ``metrics.confusion_matrix``) or a matrix (counts or means).
        classnames: class names; None takes them from the record.
        path: the PNG to write.
        title: figure title.
        normalize: show each true class's row as fractions (counts stay in the text when the
            matrix is small).
    """
    if isinstance(source, Mapping):
        cmat = source["metrics"].get("confusion_matrix")
        if not cmat:
            raise SarFewShotError(f"record {source.get('key')} has no confusion matrix")
        classnames = classnames or source["dataset"].get("classnames")
    else:
        cmat = [list(line) for line in source]
    names = list(classnames or [str(i) for i in range(len(cmat))])
    shown = _normalise_rows(cmat) if normalize else [[float(v) for v in ln] for ln in cmat]
    side = max(4.0, 0.45 * len(names) + 2.0)
    fig = _figure(side, side)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = list(range(len(names)))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize="small")
    ax.set_yticklabels(names, fontsize="small")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize="medium")
    if len(names) <= ANNOTATE_MAX_CLASSES:
        _annotate(ax, shown, "{:.2f}" if normalize else "{:g}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _annotate(ax: Any, shown: Sequence[Sequence[float]], fmt: str) -> None:
    """Write each cell's value on it, white on dark cells."""
    top = max(max(line) for line in shown) or 1.0
    for i, line in enumerate(shown):
        for j, v in enumerate(line):
            color = "white" if v > 0.5 * top else "black"
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize="xx-small", color=color)


def plot_confusions(rows: Sequence[Row], out_dir: PathLike) -> list[Path]:
    """One seed-averaged, row-normalised confusion matrix per leaderboard row that has them.

    Files: ``<out_dir>/confusion_<backbone>_<dataset>_<protocol>_k<K>.png`` (plus the weights or
    config hash when needed to tell rows apart).
    """
    out_dir = Path(out_dir)
    paths = []
    for row in sorted(rows, key=row_sort_key):
        cells = [c for c in row.cells if c["metrics"].get("confusion_matrix")]
        if not cells:
            continue
        cmat, names = mean_confusion(cells)
        tag = f"{_safe(row.backbone)}_{(row.weights_sha256 or 'none')[:8]}"
        if row.config_conflict:
            tag += f"_cfg{row.config_sha256[:8]}"
        name = f"confusion_{tag}_{_safe(row.dataset)}_{_safe(row.protocol)}_k{row.shots}.png"
        k = shots_text(row.shots)
        title = f"{row.backbone} · {row.dataset} · {row.protocol} · K={k} (n={len(cells)})"
        paths.append(plot_confusion(cmat, names, out_dir / name, title=title))
    return paths
