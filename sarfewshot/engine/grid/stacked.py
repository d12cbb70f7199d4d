"""Training several seeds' copies of one model as a single stacked model.

Every seed's parameters are stacked along a new leading dimension
(``torch.func.stack_module_state``) and one forward pass runs every seed's model on its own
batch through ``torch.func.vmap`` over ``functional_call``. The summed per-seed losses give each
seed exactly its own gradient; the optimiser's update is element-wise, so one optimiser over the
stacked tensors is each seed's own optimiser (same rule, same rate, same step count), and the
per-epoch schedule is shared because every seed of a group has the same config. Each seed keeps
its own data order (its own seeded loader), its own head initialisation and its own loss
history. Results equal running the seeds one by one up to floating-point reduction order.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from sarfewshot.engine.protocol import batches


@dataclass
class SeedRun:
    """One seed of a stacked run: its model, training inputs, labels and loader config."""

    cfg: Any
    model: nn.Module
    train_x: torch.Tensor  # (N, ...) uint8 images (value / 255) or float features
    train_y: torch.Tensor  # (N,) int64
    history: list[dict[str, Any]] = field(default_factory=list)
    nonfinite: str | None = None  # the message of the first non-finite loss, if any


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


def _index_orders(cfg: Any, n: int) -> Any:
    """The seed's per-epoch batches of row indices: the same seeded loader the serial path
    builds (same sampler, generator and ``drop_last``), over the indices instead of images."""
    from torch.utils.data import TensorDataset

    from sarfewshot.data.datamanager import build_data_loader

    dl = cfg.DATALOADER
    loader = build_data_loader(
        cfg, TensorDataset(torch.arange(n)), True, dl.TRAIN_X.SAMPLER, int(dl.TRAIN_X.BATCH_SIZE)
    )
    return loader


class StackedTrainer:
    """Train ``runs`` (same architecture, same optimiser config) together, then test them.

    Args:
        runs: one :class:`SeedRun` per seed, each model freshly initialised for its seed.
        device: where the stacked weights and batches live.
        precision: ``MODEL.PRECISION`` (``fp32`` or ``bf16`` autocast).
        on_epoch: ``on_epoch(epoch, max_epoch)`` after each epoch.
        on_summary: per seed, a callable taking each epoch's summary (or None).
    """

    def __init__(
        self,
        runs: Sequence[SeedRun],
        device: str,
        precision: str = "fp32",
        on_epoch: Callable[[int, int], None] | None = None,
        on_summary: Sequence[Callable[[dict], None] | None] = (),
    ) -> None:
        from torch.func import stack_module_state

        from sarfewshot.models.features import precision_context

        self.runs = list(runs)
        self.device = torch.device(device)
        self.autocast = lambda: precision_context(self.device, precision)
        self.on_epoch = on_epoch
        self.on_summary = list(on_summary) or [None] * len(self.runs)
        models = [r.model.to(self.device) for r in self.runs]
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        self.base = copy.deepcopy(models[0]).to("meta")  # structure only: weights are stacked
        for r in self.runs:
            r.model = None  # type: ignore[assignment]  # the stacked tensors own the weights now

    def _forward(self, x: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        from torch.func import functional_call, vmap
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def one(p: dict, b: dict, xi: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (p, b), (xi,))

        in_dims = (0, 0, None if shared_input else 0)
        # vmap has no batching rule for the fused CPU attention kernel; the math kernel has.
        with sdpa_kernel([SDPBackend.MATH]), self.autocast():
            return vmap(one, in_dims=in_dims)(self.params, self.buffers, x)

    def train(self) -> float:
        """Train every seed for ``OPTIM.MAX_EPOCH`` epochs; return the seconds it took."""
        from sarfewshot.engine.optim import build_lr_scheduler, build_optimizer

        start = time.perf_counter()
        cfg = self.runs[0].cfg
        optim = build_optimizer(list(self.params.values()), cfg.OPTIM)
        sched = build_lr_scheduler(optim, cfg.OPTIM)
        loaders = [_index_orders(r.cfg, len(r.train_y)) for r in self.runs]
        xs = [r.train_x.to(self.device) for r in self.runs]
        ys = [r.train_y.to(self.device) for r in self.runs]
        max_epoch = int(cfg.OPTIM.MAX_EPOCH)
        for epoch in range(max_epoch):
            epoch_start, lr = time.time(), float(optim.param_groups[0]["lr"])
            self.base.train()
            totals = self._epoch(optim, loaders, xs, ys, epoch)
            sched.step()
            self._summaries(epoch, max_epoch, lr, totals, time.time() - epoch_start)
        return time.perf_counter() - start

    def _epoch(self, optim: Any, loaders: list, xs: list, ys: list, epoch: int) -> np.ndarray:
        """One epoch; returns per-seed sums of (loss, accuracy) and the batch count."""
        totals = np.zeros((len(self.runs), 3))
        # Each loader is run to its end, as a for loop over it does: a sampler draws from its
        # generator on exhaustion too, so stopping early (zip) would shift the next epoch.
        orders = [list(loader) for loader in loaders]
        for b, idx in enumerate(zip(*orders)):
            rows = [i[0].to(self.device) for i in idx]
            x = torch.stack([_as_float(xs[s].index_select(0, r)) for s, r in enumerate(rows)])
            y = torch.stack([ys[s].index_select(0, r) for s, r in enumerate(rows)])
            logits = self._forward(x).float()
            losses = (
                nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
                .view(y.shape)
                .mean(dim=1)
            )
            optim.zero_grad(set_to_none=True)
            losses.sum().backward()
            optim.step()
            acc = (logits.argmax(dim=2) == y).float().mean(dim=1)
            values = losses.detach().cpu().numpy()
            self._check_finite(values, epoch, b)
            totals[:, 0] += values
            totals[:, 1] += 100.0 * acc.cpu().numpy()
            totals[:, 2] += 1
        return totals

    def _check_finite(self, losses: np.ndarray, epoch: int, batch: int) -> None:
        # A seed whose loss turns non-finite is diverged, as the serial path's detect_anomaly
        # says; its slice keeps running (its values cannot reach the other seeds' slices).
        for run, value in zip(self.runs, losses):
            if run.nonfinite is None and not math.isfinite(float(value)):
                run.nonfinite = (
                    f"NonFiniteLossError: loss is infinite or NaN ([{float(value)}]) at epoch "
                    f"{epoch + 1}, batch {batch + 1}; training stopped"
                )

    def _summaries(
        self, epoch: int, max_epoch: int, lr: float, totals: np.ndarray, seconds: float
    ) -> None:
        for s, run in enumerate(self.runs):
            count = max(totals[s, 2], 1.0)
            summary = {"epoch": epoch + 1, "max_epoch": max_epoch, "lr": lr}
            summary.update({"loss": totals[s, 0] / count, "acc": totals[s, 1] / count})
            summary["time"] = seconds
            run.history.append(summary)
            if self.on_summary[s] is not None and run.nonfinite is None:
                self.on_summary[s](summary)
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1, max_epoch)

    @torch.no_grad()
    def predict(self, test_x: torch.Tensor, batch_size: int) -> np.ndarray:
        """Every seed's predictions on one shared test set: ``(seeds, N)`` labels."""
        self.base.eval()
        preds = []
        for part in batches(len(test_x), batch_size):
            x = _as_float(test_x[part].to(self.device))
            preds.append(self._forward(x, shared_input=True).argmax(dim=2).cpu())
        return torch.cat(preds, dim=1).numpy().astype(np.int64)


def stackable(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained stacked, or None when it can.

    Random layers (dropout, stochastic depth) would draw from one generator for every seed,
    and batch-norm layers inside the trained network would need per-seed running statistics
    under ``vmap``; the grid runs such models one seed at a time.
    """
    for name, module in model.named_modules():
        p = float(getattr(module, "p", 0.0) or 0.0)
        random_layer = isinstance(module, nn.Dropout) or type(module).__name__ == "DropPath"
        if random_layer and p > 0:
            return f"{name or 'model'} draws random numbers in training (p={p})"
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and name.startswith("backbone"):
            return f"{name} is a batch-norm layer"
    return None
