"""The board as one self-contained HTML page (needs the ``board`` extra: jinja2).

The page is rendered from ``templates/board.html.j2`` with autoescaping on, so every value from
a record (backbone names, paths, hosts, errors) is HTML-escaped; the data the page's script reads
(cell details, shot curves) is embedded with Jinja2's ``tojson``, which escapes ``<``, ``>``,
``&`` and ``'`` as ``\\u003c``-style sequences, so no record value can end the script element.
Style sheet, script and charts are inline; the page makes no request (see ``docs/board.md``).
"""

from __future__ import annotations

from itertools import groupby
from pathlib import Path
from typing import Any, Mapping, Sequence

from sarfewshot.errors import SarFewShotError
from sarfewshot.results.board import IN_DISTRIBUTION, build_board
from sarfewshot.utils.io import PathLike, atomic_write_text

__all__ = ["BoardUnavailableError", "render_board", "write_board"]

TEMPLATE = "board.html.j2"


class BoardUnavailableError(SarFewShotError, ImportError):
    """jinja2 is not installed."""


def _environment() -> Any:
    try:
        import jinja2
    except ImportError:
        raise BoardUnavailableError(
            "the board page needs jinja2: pip install 'sarfewshot[board]' (or pip install jinja2)"
        ) from None
    return jinja2.Environment(
        loader=jinja2.PackageLoader("sarfewshot.results", "templates"),
        autoescape=True,  # every record value is user data
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def header_groups(columns: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The column groups above the K headers: datasets, and (dataset, condition) pairs."""
    datasets = [
        {"dataset": d, "span": len(list(cols))}
        for d, cols in groupby(columns, key=lambda c: c["dataset"])
    ]
    conditions = [
        {"dataset": d, "condition": c, "span": len(list(cols))}
        for (d, c), cols in groupby(columns, key=lambda c: (c["dataset"], c["condition"]))
    ]
    return {"datasets": datasets, "conditions": conditions}


def render_board(board: Mapping[str, Any], title: str = "sarfewshot board") -> str:
    """The page's HTML for a :func:`~sarfewshot.results.board.build_board` result."""
    template = _environment().get_template(TEMPLATE)
    return template.render(
        board=board,
        title=title,
        groups=header_groups(board["columns"]),
        in_distribution=IN_DISTRIBUTION,
    )


def write_board(
    records: Sequence[Mapping[str, Any]],
    out_dir: PathLike,
    *,
    references: Sequence[str] | None = None,
    include_diverged: bool = False,
    command: str = "",
) -> Path:
    """Build and write ``<out_dir>/index.html`` atomically; returns its path.

    Raises:
        SarFewShotError: ``out_dir`` is an existing file (checked before the board is built).
    """
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise SarFewShotError(
            f"{out_dir} is a file: the page is written as {out_dir}/index.html, so name a folder"
        )
    board = build_board(
        records, references=references, include_diverged=include_diverged, command=command
    )
    path = Path(out_dir) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render_board(board))
    return path
