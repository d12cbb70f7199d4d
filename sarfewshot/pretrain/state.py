"""Run state and schedule of a pretraining run: position, learning-rate schedule, clock, and
the set-up that builds data, model, optimizer and scaler for one process."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode

from sarfewshot.errors import DatasetError
from sarfewshot.pretrain.data import (
    AugmentSpec,
    EpochSampler,
    ShardImages,
    UnlabelledImages,
)
from sarfewshot.pretrain.distributed import DistInfo
from sarfewshot.pretrain.methods import build_pretrain_model
from sarfewshot.pretrain.provenance import PretrainData, collect


@dataclass
class Position:
    """Where the run stands: optimizer steps done, current epoch, micro-batches done in it."""

    step: int = 0
    epoch: int = 0
    micro: int = 0


@dataclass
class Schedule:
    """Linear warm-up over ``warmup`` steps, then half-cosine from ``lr`` to ``min_lr``."""

    lr: float
    min_lr: float
    warmup: float
    total: int

    def at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based)."""
        if step < self.warmup:
            return self.lr * step / self.warmup
        span = max(self.total - self.warmup, 1e-12)
        t = min((step - self.warmup) / span, 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass
class Meter:
    """Sums between two log lines."""

    loss: float = 0.0
    target_var: float = 0.0
    grad_norm: float = 0.0
    steps: int = 0
    images: int = 0
    since: float = field(default_factory=time.perf_counter)


@dataclass
class Clock:
    """Training time of the run so far, summed over every resumed piece.

    Wall and CPU seconds of the training loop (rank 0's process; CPU counts all its threads).
    A checkpoint carries both, so a run stopped and resumed reports its whole cost; work after
    the last checkpoint is redone on resume and counted once, as it is kept once.
    """

    wall_s: float = 0.0
    cpu_s: float = 0.0
    since_wall: float | None = None
    since_cpu: float = 0.0

    def start(self) -> None:
        self.since_wall, self.since_cpu = time.perf_counter(), time.process_time()

    def totals(self) -> dict[str, float]:
        """Seconds so far, ``{"wall_s", "cpu_s"}`` (the carried ones while not started)."""
        if self.since_wall is None:
            return {"wall_s": self.wall_s, "cpu_s": self.cpu_s}
        wall = self.wall_s + time.perf_counter() - self.since_wall
        return {"wall_s": wall, "cpu_s": self.cpu_s + time.process_time() - self.since_cpu}


@dataclass
class Run:
    """Everything the loop needs."""

    cfg: CfgNode
    info: DistInfo
    module: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any
    dataset: UnlabelledImages
    sampler: EpochSampler
    schedule: Schedule
    steps_per_epoch: int
    out: Path
    amp_dtype: torch.dtype | None
    # the images trained on and their record (fingerprint, content hashes, exclusions)
    data: PretrainData | None = None
    pos: Position = field(default_factory=Position)
    meter: Meter = field(default_factory=Meter)
    clock: Clock = field(default_factory=Clock)
    # set by the SIGINT handler; the loop stops at the next step boundary
    stop_requested: bool = False
    # True while the optimizer updates the weights: an interrupt there leaves no consistent state
    updating: bool = False
    # rank 0's TensorBoard SummaryWriter (None: off, or another rank)
    writer: Any = None
    # training FLOPs per image (rank 0, TRAIN.COUNT_FLOPS; 0: not counted)
    flops_per_image: float = 0.0

    @property
    def accum(self) -> int:
        return int(self.cfg.OPTIM.ACCUM_ITER)

    @property
    def total_batch(self) -> int:
        return int(self.cfg.DATA.BATCH_SIZE) * self.accum * self.info.world_size

    @property
    def max_steps(self) -> int:
        total = self.steps_per_epoch * int(self.cfg.OPTIM.EPOCHS)
        limit = int(self.cfg.TRAIN.MAX_STEPS)
        return min(total, limit) if limit > 0 else total


# ----------------------------------------------------------------------------- set-up


def amp_dtype(cfg: CfgNode, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (CUDA only; the CPU always runs float32)."""
    if device.type != "cuda" or cfg.TRAIN.AMP == "none":
        return None
    return torch.bfloat16 if cfg.TRAIN.AMP == "bf16" else torch.float16


def absolute_lr(cfg: CfgNode, total_batch: int) -> float:
    """``OPTIM.LR`` if set, else ``BASE_LR * total_batch / 256`` (the release's rule)."""
    return float(cfg.OPTIM.LR) if cfg.OPTIM.LR > 0 else cfg.OPTIM.BASE_LR * total_batch / 256.0


def collect_data(cfg: CfgNode) -> PretrainData:
    """The run's images and their data record, the held-out sets left out."""
    from sarfewshot.pretrain.exclude import held_out_hashes

    out = Path(cfg.OUTPUT_DIR)
    specs = [str(s) for s in cfg.DATA.EXCLUDE_SPLITS]
    root, seeds = str(cfg.DATA.EXCLUDE_ROOT), str(cfg.DATA.EXCLUDE_SEEDS)
    held = held_out_hashes(specs, root, seeds, out, list(cfg.DATA.EXCLUDE_EVAL_OPTS))
    return collect(list(cfg.DATA.ROOTS), out, held, specs)


def _dataset(cfg: CfgNode, data: PretrainData) -> UnlabelledImages:
    spec = AugmentSpec(
        size=cfg.INPUT.SIZE,
        scale=tuple(cfg.INPUT.CROP_SCALE),
        ratio=tuple(cfg.INPUT.CROP_RATIO),
        hflip=cfg.INPUT.HFLIP,
        contrast=cfg.INPUT.CONTRAST,
    )
    pct = cfg.DATA.FLOAT_PERCENTILE
    if data.count < 1:
        raise DatasetError(
            f"--exclude-split left none of the {data.excluded['count']} pretraining images (--data)"
        )
    if data.kind == "shards":
        return ShardImages(Path(data.roots[0]).expanduser(), spec, cfg.SEED, pct, data.keep)
    return UnlabelledImages(data.files, spec, cfg.SEED, pct)


def _steps_per_epoch(cfg: CfgNode, sampler: EpochSampler, world: int) -> int:
    batch, accum = int(cfg.DATA.BATCH_SIZE), int(cfg.OPTIM.ACCUM_ITER)
    steps = sampler.per_rank // batch // accum
    if steps < 1:
        raise DatasetError(
            f"{sampler.size} image(s) on {world} process(es) cannot fill one step of "
            f"--batch-size {batch} x OPTIM.ACCUM_ITER {accum}; lower the batch size or add data"
        )
    return steps


def _wrap(module: nn.Module, info: DistInfo) -> nn.Module:
    if not info.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def _optimizer(module: nn.Module, cfg: CfgNode, lr: float) -> torch.optim.Optimizer:
    from sarfewshot.engine.optim import param_groups_weight_decay

    groups = param_groups_weight_decay(module, cfg.OPTIM.WEIGHT_DECAY)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.OPTIM.BETAS))


def build_run(cfg: CfgNode, info: DistInfo) -> Run:
    """Data, model, optimizer and schedule for ``cfg`` on this process."""
    data = collect_data(cfg)
    dataset = _dataset(cfg, data)
    sampler = EpochSampler(len(dataset), info.world_size, info.rank, cfg.SEED)
    steps = _steps_per_epoch(cfg, sampler, info.world_size)
    module = build_pretrain_model(cfg).to(info.device)
    total_batch = int(cfg.DATA.BATCH_SIZE) * int(cfg.OPTIM.ACCUM_ITER) * info.world_size
    lr = absolute_lr(cfg, total_batch)
    schedule = Schedule(
        lr=lr,
        min_lr=float(cfg.OPTIM.MIN_LR),
        warmup=float(cfg.OPTIM.WARMUP_EPOCHS) * steps,
        total=steps * int(cfg.OPTIM.EPOCHS),
    )
    dtype = amp_dtype(cfg, info.device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return Run(
        cfg=cfg,
        info=info,
        module=module,
        model=_wrap(module, info),
        optimizer=_optimizer(module, cfg, lr),
        scaler=scaler,
        dataset=dataset,
        sampler=sampler,
        schedule=schedule,
        steps_per_epoch=steps,
        out=Path(cfg.OUTPUT_DIR),
        amp_dtype=dtype,
        data=data,
    )
