"""Progress for logs: one line at a steady interval when output is not a terminal.

tqdm bars draw on a terminal. When stdout is redirected to a file (a cluster job, ``nohup``,
``> log.txt``) they are off, and a long run would print nothing until it ends. A
:class:`Heartbeat` then prints a one-line report, at most once per interval (30 s by default,
``SARFEWSHOT_PROGRESS_INTERVAL`` seconds), so a log shows how far the run got::

    [pretrain] step 1200/5000 (24%), 6m02s elapsed, ~19m06s left, loss 0.412

On a terminal the bars are enough and heartbeats stay silent; ``SARFEWSHOT_NO_PROGRESS=1``
silences both. :func:`progress_enabled` is the one place that reads that switch.

Time-left estimates follow the recent rate (:class:`RecentRate`, an exponential moving average
over a time window), not the average since the start: on a machine whose load changes during a
run, the average since the start lags behind and promises seconds when minutes are left.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator, TextIO

DEFAULT_INTERVAL = 30.0
DEFAULT_WINDOW = 60.0  # seconds: the time constant of the recent-rate average
# Values of SARFEWSHOT_NO_PROGRESS that leave progress on (unset counts as on too).
_ON_VALUES = ("", "0", "false", "no", "off")


def progress_switched_off() -> bool:
    """Whether ``SARFEWSHOT_NO_PROGRESS`` turns progress off: any value but empty, ``0``,
    ``false``, ``no`` or ``off`` (any case)."""
    return os.environ.get("SARFEWSHOT_NO_PROGRESS", "").strip().lower() not in _ON_VALUES


def progress_enabled(requested: bool | None = None, stream: TextIO | None = None) -> bool:
    """Whether to draw tqdm bars.

    Args:
        requested: an explicit choice (a flag or argument); None decides from the environment.
        stream: where bars draw (default ``sys.stderr``).

    Returns:
        ``requested`` when given; otherwise False when ``SARFEWSHOT_NO_PROGRESS`` is set (see
        :func:`progress_switched_off`) or ``stream`` is not a terminal, else True.
    """
    if requested is not None:
        return bool(requested)
    if progress_switched_off():
        return False
    return _isatty(stream if stream is not None else sys.stderr)


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def _interval() -> float:
    value = os.environ.get("SARFEWSHOT_PROGRESS_INTERVAL", "").strip()
    try:
        return max(0.0, float(value)) if value else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


def heartbeat_wanted(stream: TextIO | None = None) -> bool:
    """Heartbeats print when ``stream`` (stdout) is not a terminal and progress is not off."""
    if progress_switched_off():
        return False
    return not _isatty(stream if stream is not None else sys.stdout)


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m05s``."""
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_per_unit(seconds_per_unit: float | None, unit: str) -> str:
    """Time per unit, readable at any speed: ``0.4 ms/ep``, ``38 ms/ep``, ``2.1 s/ep``.

    A rate such as ``25731.93ep/s`` (sub-millisecond epochs) says less than the time per unit.
    """
    if seconds_per_unit is None or not math.isfinite(seconds_per_unit) or seconds_per_unit < 0:
        return f"? s/{unit}"
    if seconds_per_unit < 0.01:
        return f"{seconds_per_unit * 1000:.1f} ms/{unit}"
    if seconds_per_unit < 1:
        return f"{seconds_per_unit * 1000:.0f} ms/{unit}"
    if seconds_per_unit < 60:
        return f"{seconds_per_unit:.1f} s/{unit}"
    return f"{format_seconds(seconds_per_unit)}/{unit}"


class RecentRate:
    """Units per second, averaged over roughly the last ``window`` seconds.

    An exponential moving average whose weight depends on the time between observations (not
    their count), so frequent and rare updates give the same estimate.

    Args:
        window: the time constant in seconds (default 60).
    """

    def __init__(self, window: float = DEFAULT_WINDOW) -> None:
        self.window = float(window)
        self.rate: float | None = None
        self._last: tuple[int, float] | None = None

    def observe(self, done: int, now: float) -> None:
        """Record that ``done`` units were complete at time ``now`` (seconds, monotonic)."""
        if self._last is None:
            self._last = (done, now)
            return
        last_done, last_now = self._last
        dt = now - last_now
        if dt <= 0 or done < last_done:
            return
        self._last = (done, now)
        current = (done - last_done) / dt
        if self.rate is None:
            self.rate = current
            return
        weight = 1.0 - math.exp(-dt / self.window) if self.window > 0 else 1.0
        self.rate += weight * (current - self.rate)

    def seconds_left(self, remaining: int) -> float | None:
        """Seconds for ``remaining`` more units at the recent rate (None before a rate exists)."""
        if not self.rate or self.rate <= 0:
            return None
        return remaining / self.rate


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
        # No observation at the start: a resumed run's first update would count earlier work.
        self.rate = RecentRate()

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        """Report ``done`` when the interval has passed since the last line (or ``force``)."""
        now = time.monotonic()
        self.rate.observe(done, now)
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
        left = self.seconds_left(done, elapsed)
        if left is not None:
            parts.append(f"~{format_seconds(left)} left")
        if extra:
            parts.append(extra)
        return ", ".join(parts)

    def seconds_left(self, done: int, elapsed: float) -> float | None:
        """Time left at the recent rate (the average since the start until a rate exists)."""
        if not self.total or not 0 < done < self.total:
            return None
        recent = self.rate.seconds_left(self.total - done)
        return recent if recent is not None else elapsed * (self.total - done) / done


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
