"""Optimiser and learning-rate schedule builders with Dassl's semantics.

The schedule is computed in closed form from the epoch index, so it is exact, needs no
``verbose`` argument (Dassl 0.6.3's warm-up schedulers pass it positionally and fail on
torch >= 2.7), and its state is a dict of plain numbers (Dassl pickled the scheduler object,
which ``torch.load(weights_only=True)`` refuses).

Per-epoch learning rate, as Dassl's chained torch schedulers produce it (epoch ``e`` counts
from 0, ``W = WARMUP_EPOCH``, ``g`` the decay factor of the main schedule):

* no warm-up (``W <= 0``): ``lr * g(e)``;
* warm-up epochs ``e < W``: ``WARMUP_CONS_LR`` (constant), or ``WARMUP_MIN_LR`` at ``e = 0``
  then ``lr * e / W`` (linear);
* after warm-up with ``WARMUP_RECOUNT``: ``lr * g(e - W)`` (the main schedule restarts);
* after warm-up without it: ``lr * g(0) * g(e) / g(W)`` (the main schedule continues from
  epoch ``W`` but, being chained, starts from the base rate).

with ``g(t) = (1 + cos(pi t / MAX_EPOCH)) / 2`` (cosine), ``GAMMA ** (t // STEPSIZE)``
(single_step; ``STEPSIZE <= 0`` means ``MAX_EPOCH``) or ``GAMMA ** #{milestones <= t}``
(multi_step).
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from sarfewshot.errors import ConfigError

OPTIMIZERS = ("adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw")
SCHEDULERS = ("single_step", "multi_step", "cosine")
WARMUP_TYPES = ("constant", "linear")


# ----------------------------------------------------------------------------- optimisers


def param_groups_weight_decay(
    model: nn.Module, weight_decay: float, skip_list: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and an undecayed one.

    Biases, every 1-D parameter (norm weights) and parameters named in ``skip_list`` (exact
    name, or a name ending in ``.<entry>``, e.g. ``cls_token``) get no weight decay. Frozen
    parameters are left out; empty groups are dropped.
    """
    skip = set(skip_list)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skipped = name in skip or any(name.endswith(f".{s}") for s in skip)
        if param.ndim <= 1 or name.endswith(".bias") or skipped:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def _staged_groups(model: nn.Module, optim_cfg: Any) -> list[dict[str, Any]]:
    # Dassl's STAGED_LR: layers named in NEW_LAYERS train at LR, the rest at LR * BASE_LR_MULT.
    if not isinstance(model, nn.Module):
        raise ConfigError("OPTIM.STAGED_LR needs an nn.Module, not a list of parameters")
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    new_layers = [new_layers] if isinstance(new_layers, str) else list(new_layers)
    if not new_layers:
        raise ConfigError("OPTIM.STAGED_LR is True but OPTIM.NEW_LAYERS is empty")
    children = dict(model.named_children())
    missing = [n for n in new_layers if n not in children]
    if missing:
        raise ConfigError(f"OPTIM.NEW_LAYERS {missing} are not submodules; have {sorted(children)}")
    base, new = [], []
    for name, module in children.items():
        params = [p for p in module.parameters() if p.requires_grad]
        (new if name in new_layers else base).extend(params)
    return [
        {"params": base, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
        {"params": new},
    ]


def _default_params(model_or_params: Any) -> Any:
    if isinstance(model_or_params, nn.Module):
        return [p for p in model_or_params.parameters() if p.requires_grad]
    return model_or_params


def build_optimizer(
    model_or_params: Any, optim_cfg: Any, param_groups: Sequence[dict] | None = None
) -> torch.optim.Optimizer:
    """Build the optimiser named by ``optim_cfg.NAME`` (Dassl's ``build_optimizer``).

    Args:
        model_or_params: an ``nn.Module`` (its trainable parameters) or an iterable of
            parameters / parameter-group dicts.
        optim_cfg: the ``OPTIM`` config node.
        param_groups: explicit parameter groups (e.g. from :func:`param_groups_weight_decay`);
            they take precedence over ``model_or_params`` and ``STAGED_LR``.

    Raises:
        ConfigError: unknown ``OPTIM.NAME`` (the message lists the choices).
    """
    name = str(optim_cfg.NAME).lower()
    if name not in OPTIMIZERS:
        raise ConfigError(
            f"OPTIM.NAME {optim_cfg.NAME!r} is not supported; choose from {OPTIMIZERS}"
        )
    if param_groups is not None:
        params: Any = list(param_groups)
    elif optim_cfg.STAGED_LR:
        params = _staged_groups(model_or_params, optim_cfg)
    else:
        params = _default_params(model_or_params)
    lr, wd = float(optim_cfg.LR), float(optim_cfg.WEIGHT_DECAY)
    betas = (float(optim_cfg.ADAM_BETA1), float(optim_cfg.ADAM_BETA2))
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(
            params, lr=lr, weight_decay=wd, betas=betas, amsgrad=name == "amsgrad"
        )
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=float(optim_cfg.MOMENTUM),
            weight_decay=wd,
            dampening=float(optim_cfg.SGD_DAMPNING),
            nesterov=bool(optim_cfg.SGD_NESTEROV),
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=lr,
            momentum=float(optim_cfg.MOMENTUM),
            weight_decay=wd,
            alpha=float(optim_cfg.RMSPROP_ALPHA),
        )
    if name == "radam":
        return torch.optim.RAdam(params, lr=lr, weight_decay=wd, betas=betas)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas)


# ----------------------------------------------------------------------------- schedules


class EpochLRScheduler:
    """Dassl's per-epoch schedule (main schedule plus optional warm-up), in closed form.

    Call :meth:`step` once per epoch, after the epoch's optimiser steps. Construction sets
    epoch 0's rate on the optimiser, as torch schedulers do. Each parameter group keeps its
    own base rate (``initial_lr``), so staged learning rates scale together.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, optim_cfg: Any) -> None:
        self.optimizer = optimizer
        self.kind = _check_choice(str(optim_cfg.LR_SCHEDULER), SCHEDULERS, "OPTIM.LR_SCHEDULER")
        self.max_epoch = int(optim_cfg.MAX_EPOCH)
        self.gamma = float(optim_cfg.GAMMA)
        self.stepsize = _stepsize(optim_cfg, self.kind, self.max_epoch)
        self.warmup_epoch = int(optim_cfg.WARMUP_EPOCH)
        self.warmup_type = str(optim_cfg.WARMUP_TYPE)
        if self.warmup_epoch > 0:
            _check_choice(self.warmup_type, WARMUP_TYPES, "OPTIM.WARMUP_TYPE")
        self.warmup_cons_lr = float(optim_cfg.WARMUP_CONS_LR)
        self.warmup_min_lr = float(optim_cfg.WARMUP_MIN_LR)
        self.warmup_recount = bool(optim_cfg.WARMUP_RECOUNT)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def decay(self, t: int) -> float:
        """The main schedule's factor ``g(t)`` at its own epoch ``t``."""
        if self.kind == "cosine":
            return (1.0 + math.cos(math.pi * t / self.max_epoch)) / 2.0
        if self.kind == "single_step":
            return self.gamma ** (t // self.stepsize[0])
        return self.gamma ** bisect.bisect_right(self.stepsize, t)

    def factor(self, epoch: int) -> float | None:
        """Multiplier of the base rate at ``epoch``; None during a constant warm-up."""
        w = self.warmup_epoch
        if w <= 0:
            return self.decay(epoch)
        if epoch < w:
            if self.warmup_type == "constant" or epoch == 0:
                return None
            return epoch / w
        if self.warmup_recount:
            return self.decay(epoch - w)
        at_w = self.decay(w)
        return self.decay(0) * self.decay(epoch) / at_w if at_w else 0.0

    def lr_at(self, epoch: int) -> list[float]:
        """Learning rate of every parameter group at ``epoch`` (0-based)."""
        factor = self.factor(epoch)
        if factor is None:
            fixed = self.warmup_cons_lr if self.warmup_type == "constant" else self.warmup_min_lr
            return [fixed for _ in self.base_lrs]
        return [base * factor for base in self.base_lrs]

    def _apply(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.lr_at(self.last_epoch)):
            group["lr"] = lr

    def step(self, epoch: int | None = None) -> None:
        """Advance to the next epoch (or jump to ``epoch``) and set the optimiser's rates."""
        self.last_epoch = self.last_epoch + 1 if epoch is None else int(epoch)
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The rates set by the last :meth:`step` (torch scheduler API)."""
        return self.lr_at(self.last_epoch)

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers only, loadable with ``torch.load(weights_only=True)``."""
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the epoch counter and base rates, and set the optimiser's rates."""
        self.last_epoch = int(state["last_epoch"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self._apply()


def _check_choice(value: str, choices: Sequence[str], key: str) -> str:
    if value not in choices:
        raise ConfigError(f"{key} {value!r} is not supported; choose from {tuple(choices)}")
    return value


def _stepsize(optim_cfg: Any, kind: str, max_epoch: int) -> list[int]:
    raw = optim_cfg.STEPSIZE
    steps = [raw] if isinstance(raw, int) else list(raw)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in steps) or not steps:
        raise ConfigError(f"OPTIM.STEPSIZE must be an int or a list of ints, got {raw!r}")
    if kind == "single_step":
        # Dassl uses the last entry; a non-positive step means "decay once, at MAX_EPOCH".
        step = steps[-1]
        return [step if step > 0 else max(max_epoch, 1)]
    if kind == "multi_step":
        return sorted(steps)
    if max_epoch <= 0:
        raise ConfigError(f"OPTIM.MAX_EPOCH must be positive for cosine, got {max_epoch}")
    return steps


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> EpochLRScheduler:
    """Dassl's ``build_lr_scheduler``: the main schedule wrapped in the configured warm-up.

    Raises:
        ConfigError: unknown ``OPTIM.LR_SCHEDULER`` / ``OPTIM.WARMUP_TYPE`` or bad ``STEPSIZE``.
    """
    return EpochLRScheduler(optimizer, optim_cfg)
