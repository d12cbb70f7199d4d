"""The records' ``contamination`` field summed up for tables: did the backbone see the scored
images in pretraining? (Written by the grid; see ``sarfewshot.engine.grid.contamination``.)"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

SEEN_MARK = "§"
SEEN_NOTE = (
    f"{SEEN_MARK}: the backbone saw some of the scored images in pretraining (matched by content "
    "sha256; column contamination_seen, record field contamination)"
)


def seen_max(records: Iterable[Mapping[str, Any]]) -> int | None:
    """The largest known ``contamination.seen`` over ``records``; None when none is known."""
    seen = [
        int(c["seen"])
        for c in (r.get("contamination") or {} for r in records)
        if c.get("seen") is not None
    ]
    return max(seen) if seen else None


def methods(records: Iterable[Mapping[str, Any]]) -> str:
    """The records' contamination methods, joined (``unknown`` for records without the field)."""
    found = {(r.get("contamination") or {}).get("method") or "unknown" for r in records}
    return ",".join(sorted(found)) or "unknown"
