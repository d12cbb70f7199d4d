"""The batched executor: the seeds of one (backbone, dataset, protocol, K) trained together.

``finetune`` and the cached-feature ``linear`` probe run as one stacked model per group
(:mod:`.stacked`); the test set goes through every seed's model in large batches. Everything
else (feature protocols, ``--no-feature-cache`` linear cells, models with random layers,
``best_val`` selection, staged learning rates, support sets of different sizes) runs one cell
at a time exactly as ``--serial`` does. The group size comes from the free device memory and
halves on an out-of-memory error; a group that fails for another reason is rerun seed by seed.
Each record says which executor ran it and in how large a group (``record["execution"]``).
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np
import torch

from sarfewshot.engine.grid.executors import SerialExecutor, epoch_logger
from sarfewshot.engine.grid.plan import Cell
from sarfewshot.engine.grid.progress import Bars
from sarfewshot.engine.grid.record import (
    debug_traceback,
    outcome_records,
    unscored_records,
)
from sarfewshot.engine.grid.stacked import SeedRun, StackedTrainer, stackable
from sarfewshot.engine.protocol import REQUIRES_FEATURES, CellOutcome, classification_metrics
from sarfewshot.errors import SarFewShotError

MEMORY_SHARE = 0.5  # of the free memory a group may plan to use (estimates are rough)
TEST_BATCH_FACTOR = 8  # test batches of all seeds together: this many times DATALOADER.TEST


class BatchedExecutor(SerialExecutor):
    """Groups the seeds of a (backbone, dataset, protocol, K) and trains each group stacked."""

    name = "batched"

    def groups(self, cells: Sequence[Cell]) -> list[list[Cell]]:
        """Consecutive cells that differ only in their seed form a group."""
        out: list[list[Cell]] = []
        for cell in cells:
            key = (cell.backbone, cell.dataset, cell.protocol, cell.shots)
            last = out[-1][0] if out else None
            if last is not None and (last.backbone, last.dataset, last.protocol, last.shots) == key:
                out[-1].append(cell)
            else:
                out.append([cell])
        return out

    def run_group(self, cells: Sequence[Cell], bars: Bars) -> list[list[dict[str, Any]]]:
        """Stacked when the group allows it, else (or after a failure) one cell at a time."""
        reason = self.unbatchable(cells)
        if reason is None:
            try:
                return self._run_stacked(list(cells), bars)
            except (SarFewShotError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - rerun the group on the reference path
                debug_traceback()
                self.ws.printer(
                    f"batched group failed ({type(exc).__name__}: {exc}); running its "
                    f"{len(cells)} cell(s) one by one"
                )
        return [self.run_cell(cell, bars) for cell in cells]

    def unbatchable(self, cells: Sequence[Cell]) -> str | None:
        """Why the group runs serially, or None when it can be stacked."""
        if len(cells) < 2:
            return "a single cell"
        cfg, protocol = cells[0].cfg, self.ws.protocols[cells[0].protocol]
        if not hasattr(protocol, "initial_model") and not hasattr(protocol, "initial_head"):
            return f"protocol {protocol.name} has no stacked form"
        needs = protocol.requirements(cfg)
        if hasattr(protocol, "initial_head") and REQUIRES_FEATURES not in needs:
            return "the linear probe re-runs the backbone (--no-feature-cache)"
        if cfg.TEST.FINAL_MODEL != "last_step" or cfg.TEST.NO_TEST:
            return "TEST.FINAL_MODEL is not last_step"
        if cfg.OPTIM.STAGED_LR:
            return "OPTIM.STAGED_LR"
        if hasattr(protocol, "initial_model"):
            backbone = self.ws.backbones[cells[0].backbone].factory()
            return stackable(protocol.initial_model(cfg, backbone, 2))
        return None

    # -- the stacked path ------------------------------------------------------------------

    def _run_stacked(self, cells: list[Cell], bars: Bars) -> list[list[dict[str, Any]]]:
        start = time.perf_counter()
        inputs = [self.ws.inputs(cell) for cell in cells]
        sizes = {len(data.train_labels) for _, data in inputs}
        tests = {_test_paths(data) for _, data in inputs}
        if len(sizes) > 1 or len(tests) > 1:
            return [self.run_cell(cell, bars) for cell in cells]  # support sets differ in size
        data_s = time.perf_counter() - start
        size = self.group_size(cells, inputs)
        records: list[list[dict[str, Any]]] = []
        at = 0
        while at < len(cells):
            chunk = slice(at, at + size)
            try:
                records += self._train_chunk(cells[chunk], inputs[chunk], bars, data_s)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if size == 1 or "memory" not in str(exc):
                    raise
                size = max(1, size // 2)  # never an out-of-memory crash: smaller groups
                _free_cached(self.ws.device)
                continue
            at += size
        return records

    def _train_chunk(
        self, cells: list[Cell], inputs: list[tuple[Any, Any]], bars: Bars, data_s: float
    ) -> list[list[dict[str, Any]]]:
        start = time.perf_counter()
        cfg, protocol = cells[0].cfg, self.ws.protocols[cells[0].protocol]
        features = REQUIRES_FEATURES in protocol.requirements(cfg)
        runs = [self._seed_run(cell, data, features) for cell, (_, data) in zip(cells, inputs)]
        loggers = [epoch_logger(self.ws, c) if self.ws.tensorboard else None for c in cells]
        try:
            trainer = StackedTrainer(
                runs, self.ws.device, str(cfg.MODEL.PRECISION), bars.on_epoch, loggers
            )
            setup_s = time.perf_counter() - start
            train_s = trainer.train()
            t0 = time.perf_counter()
            test = inputs[0][1]
            test_x = _tensor(test.test_features if features else test.test_images)
            batch = int(cfg.DATALOADER.TEST.BATCH_SIZE) * TEST_BATCH_FACTOR
            preds = trainer.predict(test_x, batch)
            extra = {  # every condition's test set through the same trained models
                name: trainer.predict(_tensor(t.features if features else t.images), batch)
                for name, t in test.extra_tests.items()
            }
            test_s = time.perf_counter() - t0
        finally:
            for logger in loggers:
                if logger is not None:
                    logger.close()
        share = (time.perf_counter() - start) / len(cells)
        timings = {"data_s": data_s / len(cells), "setup_s": setup_s / len(cells)}
        timings.update(train_s=train_s / len(cells), test_s=test_s / len(cells))
        timings.update(total_s=share + data_s / len(cells), group_s=share * len(cells))
        execution = {"executor": self.name, "group_size": len(cells)}
        return [
            self._records(cell, split, data, run, (pred, extra, i), timings, execution)
            for i, (cell, (split, data), run, pred) in enumerate(zip(cells, inputs, runs, preds))
        ]

    def _seed_run(self, cell: Cell, data: Any, features: bool) -> SeedRun:
        protocol = self.ws.protocols[cell.protocol]
        if features:
            x = _tensor(data.train_features)
            model = protocol.initial_head(cell.cfg, int(x.shape[1]), data.num_classes)
        else:
            x = _tensor(data.train_images)
            backbone = self.ws.backbones[cell.backbone].factory()
            model = protocol.initial_model(cell.cfg, backbone, data.num_classes)
        y = torch.from_numpy(np.asarray(data.train_labels, dtype=np.int64))
        return SeedRun(cell.cfg, model, x, y)

    def _records(
        self,
        cell: Cell,
        split: Any,
        data: Any,
        run: SeedRun,
        preds: tuple[np.ndarray, dict[str, Any], int],
        timings: dict,
        execution: dict,
    ) -> list[dict[str, Any]]:
        """The seed's records: the test slot's and, for a ``--conditions`` cell, one per
        further condition (``preds``: the test slot's predictions, every condition's
        predictions of all seeds, and this seed's index)."""
        if run.nonfinite is not None:
            reason = run.nonfinite
            return unscored_records(self.ws, cell, split, timings, reason, "diverged", execution)
        main, extra, seed = preds
        trained: dict[str, Any] = {}
        if run.history:
            trained["epochs"] = int(run.history[-1]["epoch"])
            trained["final_train_loss"] = float(run.history[-1]["loss"])
            trained["first_train_loss"] = float(run.history[0]["loss"])
        metrics = {**classification_metrics(data.test_labels, main, data.classnames), **trained}
        conditions = {
            name: {
                **classification_metrics(t.labels, extra[name][seed], data.classnames),
                **trained,
            }
            for name, t in data.extra_tests.items()
        }
        outcome = CellOutcome(metrics, conditions=conditions)
        return outcome_records(self.ws, cell, split, outcome, timings, data.num_classes, execution)

    # -- memory ----------------------------------------------------------------------------

    def group_size(self, cells: list[Cell], inputs: list[tuple[Any, Any]]) -> int:
        """How many seeds fit together: the free memory over an estimate of one seed's need."""
        cfg, protocol = cells[0].cfg, self.ws.protocols[cells[0].protocol]
        if REQUIRES_FEATURES in protocol.requirements(cfg):
            return len(cells)  # heads are tiny
        override = os.environ.get("SARFEWSHOT_GROUP_SIZE", "")
        if override:
            return max(1, min(len(cells), int(override)))
        data = inputs[0][1]
        backbone = self.ws.backbones[cells[0].backbone].factory()
        model = protocol.initial_model(cfg, backbone, data.num_classes)
        batch = int(cfg.DATALOADER.TRAIN_X.BATCH_SIZE)
        need = seed_memory(model, _tensor(data.train_images)[:batch])
        free = free_memory(self.ws.device)
        return max(1, min(len(cells), int(MEMORY_SHARE * free // max(need, 1))))


def _test_paths(data: Any) -> tuple:
    """Every test set a cell scores, by paths: the seeds of a group must share them."""
    extra = tuple((name, tuple(t.paths)) for name, t in data.extra_tests.items())
    return (tuple(data.test_paths or ()), extra)


def seed_memory(model: torch.nn.Module, batch: torch.Tensor) -> int:
    """Bytes one seed needs: weights, gradients and two AdamW moments, plus the activations of
    a training batch (every module's output, counted twice for what backward keeps)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    total = [0]

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * 4

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(batch.float().div(255.0) if batch.dtype == torch.uint8 else batch.float())
    finally:
        for handle in handles:
            handle.remove()
    return 4 * weights + 2 * total[0]


def free_memory(device: str) -> int:
    """Free bytes on ``device``: CUDA's free memory, or the host's available memory."""
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _free_cached(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.from_numpy(np.ascontiguousarray(value))
