"""Progress: a bar for cells, a second one for the current cell's (or group's) epochs, and
heartbeat lines when output is redirected (:mod:`sarfewshot.utils.progress`)."""

from __future__ import annotations

import os
import sys
from typing import Any

from sarfewshot.utils.progress import Heartbeat


def progress_enabled(requested: bool | None = None) -> bool:
    """Bars are on unless turned off, ``SARFEWSHOT_NO_PROGRESS=1``, or stderr is not a TTY."""
    if requested is not None:
        return requested
    if os.environ.get("SARFEWSHOT_NO_PROGRESS", "") not in ("", "0"):
        return False
    return sys.stderr.isatty()


class Bars:
    """A bar for cells and a second one for the current cell's epochs."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.enabled = enabled
        self.cells = tqdm(total=total, desc="cells", unit="cell", disable=not enabled, position=0)
        self.epochs: Any = None
        self.beat = Heartbeat("cell", enabled=False)

    def start_cell(self, label: str) -> None:
        self.cells.set_postfix_str(label, refresh=False)
        self.close_epochs()
        self.beat = Heartbeat(label, unit="epoch")  # log lines when stdout is redirected

    def on_epoch(self, epoch: int, max_epoch: int) -> None:
        self.beat.total = max_epoch
        self.beat.update(epoch)
        if not self.enabled:
            return
        if self.epochs is None:
            self.epochs = self._tqdm(
                total=max_epoch, desc="  epochs", unit="ep", position=1, leave=False
            )
        self.epochs.n = epoch
        self.epochs.refresh()

    def close_epochs(self) -> None:
        if self.epochs is not None:
            self.epochs.close()
            self.epochs = None

    def end_cell(self) -> None:
        self.close_epochs()
        self.cells.update(1)

    def close(self) -> None:
        self.close_epochs()
        self.cells.close()
