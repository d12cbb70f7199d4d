"""TensorBoard event files through ``torch.utils.tensorboard`` (the ``tensorboard`` extra).

Logs stay where they were (``log.jsonl``, records); event files are an extra view for
``tensorboard --logdir``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from sarfewshot.errors import ConfigError


def summary_writer(logdir: str | Path, purge_step: int | None = None) -> Any:
    """A ``SummaryWriter`` writing into ``logdir`` (``purge_step``: hide earlier events from
    that step on, for a resumed run).

    Raises:
        ConfigError: the ``tensorboard`` package is not installed (names the extra).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard needs the tensorboard package: pip install 'sarfewshot[tensorboard]'"
        ) from None
    return SummaryWriter(log_dir=str(logdir), purge_step=purge_step or None)


def write_scalars(writer: Any, step: int, values: Mapping[str, Any], prefix: str = "") -> None:
    """Add every finite number of ``values`` as a scalar ``prefix + name`` at ``step``."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            writer.add_scalar(f"{prefix}{name}", float(value), int(step))


class EpochLogger:
    """An epoch callback that writes a trainer's epoch summaries (loss, lr, acc, ...)."""

    SKIP = ("epoch", "max_epoch")

    def __init__(self, logdir: str | Path) -> None:
        self.logdir = Path(logdir)
        self.writer: Any = None

    def __call__(self, summary: Mapping[str, Any]) -> None:
        if self.writer is None:
            self.writer = summary_writer(self.logdir)
        values = {k: v for k, v in summary.items() if k not in self.SKIP}
        write_scalars(self.writer, int(summary["epoch"]), values, prefix="train/")

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
