"""CPU threads: ``--threads`` for ``eval``, ``pretrain`` and ``demo``.

PyTorch runs each operator on as many threads as the machine has cores. When other jobs already
keep those cores busy, the threads wait on each other: on a 2-core machine whose load passed the
core count, CPU time per pretraining step grew about eightfold, while one thread per process kept
it flat (docs/performance.md has the measurements). ``--threads auto`` (the default) therefore
uses the cores the 1-minute load average leaves free, at least one; ``--threads N`` sets N.
``OMP_NUM_THREADS`` set in the environment is respected by ``auto``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from sarfewshot.errors import ConfigError

AUTO = "auto"


@dataclass(frozen=True)
class ThreadChoice:
    """The number of intra-op threads and why."""

    threads: int
    reason: str


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N|auto`` to ``parser``."""
    parser.add_argument(
        "--threads",
        default=AUTO,
        metavar="N",
        help="CPU threads per process: a number, or auto (default: the cores that the load "
        "average leaves free, at least 1; OMP_NUM_THREADS when set)",
    )


def _free_cores(cores: int, load: float) -> int:
    """Cores that a 1-minute load average of ``load`` leaves free (at least 1)."""
    return max(1, min(cores, cores - int(round(load))))


def choose_threads(value: str | int | None, cores: int | None = None, load: float | None = None):
    """The thread count for ``--threads value``.

    Args:
        value: a positive number, ``auto`` or None (auto).
        cores: the CPU count (default ``os.cpu_count()``).
        load: the 1-minute load average (default ``os.getloadavg()``; 0 where unknown).

    Returns:
        A :class:`ThreadChoice`.

    Raises:
        ConfigError: ``value`` is neither a positive integer nor ``auto``.
    """
    text = AUTO if value is None else str(value).strip().lower()
    if text != AUTO:
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"--threads {value!r} must be a positive number or 'auto'")
        return ThreadChoice(int(text), f"--threads {int(text)}")
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return ThreadChoice(int(omp), f"OMP_NUM_THREADS={omp}")
    cores = cores or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on every platform
            load = 0.0
    free = _free_cores(cores, load)
    return ThreadChoice(free, f"auto: {free} of {cores} cores free at load average {load:.1f}")


def apply_threads(value: str | int | None, verbose: bool = True) -> ThreadChoice:
    """Set torch's intra-op thread count from ``--threads`` (printing why when auto lowered it)."""
    import torch

    choice = choose_threads(value)
    torch.set_num_threads(choice.threads)
    cores = os.cpu_count() or 1
    if verbose and choice.reason.startswith(AUTO) and choice.threads < cores:
        print(f"threads: {choice.threads} ({choice.reason}; --threads N to choose)")
    return choice
