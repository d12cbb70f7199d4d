"""Progress for logs: one line at a steady interval when output is not a terminal.

tqdm bars draw on a terminal. When stdout is redirected to a file (a cluster job, ``nohup``,
``> log.txt``) they are off, and a long run would print nothing until it ends. A
:class:`Heartbeat` then prints a one-line report, at most once per interval (30 s by default,
``SARFEWSHOT_PROGRESS_INTERVAL`` seconds), so a log shows how far the run got::

    [pretrain] step 1200/5000 (24%), 6m02s elapsed, ~19m06s left, loss 0.412

On a terminal the bars are enough and heartbeats stay silent; ``SARFEWSHOT_NO_PROGRESS=1``
silences both.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator, TextIO

DEFAULT_INTERVAL = 30.0


def _interval() -> float:
    value = os.environ.get("SARFEWSHOT_PROGRESS_INTERVAL", "").strip()
    try:
        return max(0.0, float(value)) if value else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


def heartbeat_wanted(stream: TextIO | None = None) -> bool:
    """Heartbeats print when ``stream`` (stdout) is not a terminal and progress is not off."""
    if os.environ.get("SARFEWSHOT_NO_PROGRESS", "") not in ("", "0"):
        return False
    stream = stream if stream is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m05s``."""
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Heartbeat:
    """Prints ``[label] unit done/total (pct), elapsed, ~left, extra`` at a steady interval.

    Args:
        label: what is running (``pretrain``, ``features``, a grid cell).
        total: the count that means done (None: no percentage or estimate).
        unit: the word before the count (``step``, ``batch``, ``epoch``).
        interval: seconds between lines (default ``SARFEWSHOT_PROGRESS_INTERVAL`` or 30).
        enabled: force on or off (default :func:`heartbeat_wanted`).
        printer: where lines go (default ``print`` with flush).
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "step",
        interval: float | None = None,
        enabled: bool | None = None,
        printer: Callable[[str], Any] | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.interval = _interval() if interval is None else float(interval)
        self.enabled = heartbeat_wanted() if enabled is None else enabled
        self.printer = printer or (lambda line: print(line, flush=True))
        self.start = self.last = time.monotonic()

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        """Report ``done`` when the interval has passed since the last line (or ``force``)."""
        now = time.monotonic()
        if not self.enabled or (now - self.last < self.interval and not force):
            return
        self.last = now
        self.printer(self.line(done, now - self.start, extra))

    def line(self, done: int, elapsed: float, extra: str = "") -> str:
        """The report for ``done`` units after ``elapsed`` seconds."""
        parts = [f"[{self.label}] {self.unit} {done}"]
        if self.total:
            parts[0] += f"/{self.total} ({100.0 * done / self.total:.0f}%)"
        parts.append(f"{format_seconds(elapsed)} elapsed")
        if self.total and 0 < done < self.total:
            parts.append(f"~{format_seconds(elapsed * (self.total - done) / done)} left")
        if extra:
            parts.append(extra)
        return ", ".join(parts)


def heartbeat_iter(
    items: Iterable[Any], label: str, total: int | None = None, unit: str = "batch"
) -> Iterator[Any]:
    """Yield ``items``, with a :class:`Heartbeat` line at the interval when logs are redirected."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    beat = Heartbeat(label, total, unit)
    for done, item in enumerate(items):
        yield item
        beat.update(done + 1)
