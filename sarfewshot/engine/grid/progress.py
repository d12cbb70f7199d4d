"""Progress: a bar for cells, a second one for the current cell's (or group's) epochs, and
heartbeat lines when output is redirected (:mod:`sarfewshot.utils.progress`)."""

from __future__ import annotations

from typing import Any

from sarfewshot.utils.progress import Heartbeat, format_per_unit, progress_enabled

__all__ = ["Bars", "progress_enabled"]

# The epochs bar shows the time per epoch, not tqdm's rate (``25731.93ep/s`` for tiny epochs).
EPOCH_BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
)


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
                total=max_epoch,
                desc="  epochs",
                unit="ep",
                position=1,
                leave=False,
                bar_format=EPOCH_BAR_FORMAT,
            )
        # update() (not setting n) feeds tqdm's moving average, so "remaining" follows the
        # recent rate.
        self.epochs.update(max(0, epoch - self.epochs.n))
        elapsed = self.epochs.format_dict["elapsed"]
        per_epoch = elapsed / epoch if epoch > 0 else None
        self.epochs.set_postfix_str(format_per_unit(per_epoch, "ep"), refresh=True)

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
