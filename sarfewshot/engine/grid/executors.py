"""Executors: how a list of pending cells becomes records.

Every executor has the same small interface: :meth:`Executor.groups` cuts the pending cells
(in execution order) into groups, and :meth:`Executor.run_group` returns the records of each
cell of a group, in order (one per cell, or one per condition of a ``--conditions`` cell, all
from one training). The runner checks, reports and writes the records; an executor never
writes. :class:`SerialExecutor` runs one cell at a time through its protocol's ``run_cell``
(the reference path, ``--serial``); :class:`~sarfewshot.engine.grid.batched.BatchedExecutor`
trains the seeds of a group together.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Sequence

from sarfewshot.engine.grid.data import Workspace
from sarfewshot.engine.grid.plan import Cell
from sarfewshot.engine.grid.progress import Bars
from sarfewshot.engine.grid.record import debug_traceback, failed_records, outcome_records
from sarfewshot.engine.protocol import CellContext, CellData
from sarfewshot.errors import DependencyError, NonFiniteLossError, SarFewShotError
from sarfewshot.utils.torch_builds import is_torchvision_mismatch, mismatch_message


class Executor:
    """Turns groups of pending cells into records (one per cell, in the group's order)."""

    name: ClassVar[str] = ""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def groups(self, cells: Sequence[Cell]) -> list[list[Cell]]:
        """The cells cut into groups that :meth:`run_group` runs together (order kept)."""
        return [[c] for c in cells]

    def run_group(self, cells: Sequence[Cell], bars: Bars) -> list[list[dict[str, Any]]]:
        """The records of each cell of ``cells``; user errors and interrupts propagate."""
        raise NotImplementedError


class SerialExecutor(Executor):
    """One cell at a time, through the protocol's own ``run_cell`` (the reference path)."""

    name = "serial"

    def run_group(self, cells: Sequence[Cell], bars: Bars) -> list[list[dict[str, Any]]]:
        """Run each cell on its own."""
        return [self.run_cell(cell, bars) for cell in cells]

    def run_cell(
        self, cell: Cell, bars: Bars, execution: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The cell's records (one per condition); a failing cell gets failed (or diverged)
        records instead."""
        start = time.perf_counter()
        try:
            return self._execute(cell, bars, execution)
        except (SarFewShotError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - one failing cell must not stop the grid
            if is_torchvision_mismatch(exc):  # every cell would fail the same way: stop
                raise DependencyError(mismatch_message()) from exc
            message = f"{type(exc).__name__}: {exc}"
            status = "diverged" if isinstance(exc, NonFiniteLossError) else "failed"
            seconds = time.perf_counter() - start
            debug_traceback()
            return failed_records(self.ws, cell, message, seconds, status, execution)

    def _execute(
        self, cell: Cell, bars: Bars, execution: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        ws = self.ws
        start = time.perf_counter()
        split, data = ws.inputs(cell)
        data_s = time.perf_counter() - start
        bb = ws.backbones[cell.backbone]
        ctx = CellContext(ws.device, bb.factory, bars.on_epoch, ws.progress)
        outcome = self._run_protocol(cell, ws.protocols[cell.protocol], data, ctx)
        timings = {"data_s": data_s, **outcome.timings}
        timings["total_s"] = time.perf_counter() - start
        return outcome_records(ws, cell, split, outcome, timings, data.num_classes, execution)

    def _run_protocol(self, cell: Cell, protocol: type, data: CellData, ctx: CellContext) -> Any:
        """``protocol.run_cell``, with a TensorBoard epoch logger under ``--tensorboard``."""
        if not self.ws.tensorboard:
            return protocol.run_cell(cell.cfg, data, ctx)
        logger = epoch_logger(self.ws, cell)
        ctx.on_summary = logger
        try:
            return protocol.run_cell(cell.cfg, data, ctx)
        finally:
            logger.close()


def epoch_logger(ws: Workspace, cell: Cell) -> Any:
    """The cell's TensorBoard event writer under ``<output>/tensorboard/<cell id>``."""
    from sarfewshot.results.records import cell_id
    from sarfewshot.utils.tensorboard import EpochLogger

    return EpochLogger(ws.output / "tensorboard" / cell_id(cell.key))
