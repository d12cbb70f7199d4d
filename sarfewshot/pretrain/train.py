"""The pretraining loop: data, model, AdamW with warm-up + half-cosine, AMP, DDP, checkpoints.

Entry points: :func:`pretrain` (Python) and ``sarfewshot pretrain`` (CLI), the same under
``torchrun --nproc_per_node=N``.

Checkpoints (rank 0, atomic) go to ``OUTPUT_DIR``: ``checkpoint-<epoch>.pth`` after 0-based epochs
``epoch % TRAIN.SAVE_EVERY == 0`` and after the last epoch (the release's naming), and
``checkpoint-last.pth`` after every epoch and when the run stops. Each holds the release's keys
``model`` (state dict, no ``module.`` prefix), ``optimizer``, ``epoch`` (the 0-based epoch the
weights belong to), ``scaler``, ``args`` (an ``argparse.Namespace`` of plain values), plus
``resume`` (step, next epoch and position in it, RNG states as tensors and ints, world size,
batch size, and the training wall and CPU seconds so far) and ``config`` (the YAML text).
Everything loads with ``torch.load(weights_only=True)`` and ``argparse.Namespace`` allow-listed.

Exact resume and any world size: the augmentation and the masks of image ``i`` in epoch ``e``
are drawn from ``(seed, e, i)``, the sampler's permutation from ``(seed, e)`` (rank ``r`` of
``R`` takes positions ``r, r + R, ...``), and the learning rate is a function of the step, so
continuing from a checkpoint reproduces the uninterrupted run, and a global batch of ``B``
gives the same update on one process as on ``R`` processes of ``B / R`` (up to the float
rounding of DDP's gradient average). Exceptions: drop path (off in the presets) draws per
micro-batch from ``(seed, rank, step, micro)``, and I-JEPA's block shapes per batch. Resuming
drops the lines of ``log.jsonl`` past the checkpoint's step, so the log holds each step once;
each line's ``wall_s`` and ``cpu_s`` are the training seconds up to it, summed over resumes.

No lost work: a run refuses an output folder that already holds a checkpoint unless it resumes
(``--resume``) or is told to start afresh (``--overwrite``, which deletes the old checkpoints and
log). Ctrl-C (SIGINT) lets the current optimizer step finish, writes ``checkpoint-last.pth`` at
that step and raises :class:`PretrainInterrupted`; a second Ctrl-C stops at once, and a
KeyboardInterrupt raised inside a step saves the state of the last finished step.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from sarfewshot.errors import ConfigError, DatasetError, SarFewShotError, WeightsError
from sarfewshot.pretrain.config import setup_pretrain_cfg
from sarfewshot.pretrain.data import (
    AugmentSpec,
    EpochSampler,
    UnlabelledImages,
    build_unlabelled,
)
from sarfewshot.pretrain.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
)
from sarfewshot.pretrain.methods import build_pretrain_model, encoder_arch
from sarfewshot.utils.io import atomic_write_bytes, atomic_write_text
from sarfewshot.utils.seeding import torch_generator

CHECKPOINT_LAST = "checkpoint-last.pth"
LOG_NAME = "log.jsonl"


def progress_enabled() -> bool:
    """tqdm bars: off with ``SARFEWSHOT_NO_PROGRESS=1`` or when stderr is not a TTY."""
    if os.environ.get("SARFEWSHOT_NO_PROGRESS", "") not in ("", "0"):
        return False
    return sys.stderr.isatty()


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


def _dataset(cfg: CfgNode) -> UnlabelledImages:
    spec = AugmentSpec(
        size=cfg.INPUT.SIZE,
        scale=tuple(cfg.INPUT.CROP_SCALE),
        ratio=tuple(cfg.INPUT.CROP_RATIO),
        hflip=cfg.INPUT.HFLIP,
        contrast=cfg.INPUT.CONTRAST,
    )
    return build_unlabelled(list(cfg.DATA.ROOTS), spec, cfg.SEED, cfg.DATA.FLOAT_PERCENTILE)


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
    dataset = _dataset(cfg)
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
    )


# ----------------------------------------------------------------------------- RNG states


def capture_rng() -> dict[str, Any]:
    """Global RNG states as tensors and ints (no numpy objects, so weights_only can load them)."""
    kind, keys, npos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(npos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": gauss_next,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ----------------------------------------------------------------------------- checkpoints


def release_args(cfg: CfgNode, run: Run) -> argparse.Namespace:
    """The ``args`` entry: the release's field names where they exist, plain values only."""
    m = cfg.MODEL
    return argparse.Namespace(
        model=f"{cfg.METHOD}_vit_p{m.PATCH_SIZE}_d{m.EMBED_DIM}",
        method=str(cfg.METHOD),
        arch=encoder_arch(cfg),
        input_size=int(cfg.INPUT.SIZE),
        patch_size=int(m.PATCH_SIZE),
        embed_dim=int(m.EMBED_DIM),
        depth=int(m.DEPTH),
        num_heads=int(m.NUM_HEADS),
        mask_ratio=float(getattr(run.module, "mask_ratio", cfg.MASK.RATIO)),
        batch_size=int(cfg.DATA.BATCH_SIZE),
        accum_iter=run.accum,
        world_size=run.info.world_size,
        blr=float(cfg.OPTIM.BASE_LR),
        lr=float(run.schedule.lr),
        min_lr=float(cfg.OPTIM.MIN_LR),
        weight_decay=float(cfg.OPTIM.WEIGHT_DECAY),
        epochs=int(cfg.OPTIM.EPOCHS),
        warmup_epochs=float(cfg.OPTIM.WARMUP_EPOCHS),
        data_path=[str(p) for p in cfg.DATA.ROOTS],
        output_dir=str(cfg.OUTPUT_DIR),
        seed=int(cfg.SEED),
    )


def checkpoint_payload(run: Run, weights_epoch: int) -> dict[str, Any]:
    """The checkpoint dict of the current state (see the module docstring)."""
    return {
        "model": run.module.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "epoch": int(weights_epoch),
        "scaler": run.scaler.state_dict(),
        "args": release_args(run.cfg, run),
        "resume": {
            "step": run.pos.step,
            "epoch": run.pos.epoch,
            "micro": run.pos.micro,
            "world_size": run.info.world_size,
            "batch_size": int(run.cfg.DATA.BATCH_SIZE),
            "accum_iter": run.accum,
            "rng": capture_rng(),
            "elapsed": run.clock.totals(),
        },
        "method": str(run.cfg.METHOD),
        "config": run.cfg.dump(),
    }


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (readers never see a half-written file)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getbuffer())
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a pretraining checkpoint safely (``weights_only=True``, Namespace allowed)."""
    from sarfewshot.models.checkpoint import safe_load

    return safe_load(path)


def _check_resume_compatible(ckpt: dict, run: Run, path: Path) -> dict:
    state = ckpt.get("resume")
    if not isinstance(state, dict) or "model" not in ckpt or "optimizer" not in ckpt:
        raise WeightsError(f"{path} is not a sarfewshot pretraining checkpoint (no resume state)")
    if ckpt.get("method") != run.cfg.METHOD:
        raise ConfigError(
            f"--resume: {path} was written by method {ckpt.get('method')!r}, not {run.cfg.METHOD!r}"
        )
    same = (state["world_size"], state["batch_size"], state["accum_iter"]) == (
        run.info.world_size,
        int(run.cfg.DATA.BATCH_SIZE),
        run.accum,
    )
    if state["micro"] and not same:
        raise ConfigError(
            f"--resume: {path} stopped mid-epoch with world size {state['world_size']}, batch "
            f"{state['batch_size']}, accumulation {state['accum_iter']}; resume with those"
        )
    return state


def resume_path(cfg: CfgNode) -> Path | None:
    """The checkpoint to resume from: ``TRAIN.RESUME`` (``auto``: the output's last one)."""
    value = str(cfg.TRAIN.RESUME).strip()
    if not value:
        return None
    if value == "auto":
        last = Path(cfg.OUTPUT_DIR) / CHECKPOINT_LAST
        return last if last.is_file() else None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"--resume {value}: no such checkpoint file")
    return path


def resume(run: Run, path: Path) -> None:
    """Restore model, optimizer, scaler, position and RNG states from ``path``."""
    ckpt = load_checkpoint(path)
    state = _check_resume_compatible(ckpt, run, path)
    run.module.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.pos = Position(step=state["step"], epoch=state["epoch"], micro=state["micro"])
    elapsed = state.get("elapsed") or {}  # absent in checkpoints older than the clock
    run.clock = Clock(float(elapsed.get("wall_s", 0.0)), float(elapsed.get("cpu_s", 0.0)))
    restore_rng(state["rng"])
    if run.info.is_main:
        truncate_log(run.out / LOG_NAME, run.pos.step)


def truncate_log(path: Path, step: int) -> int:
    """Drop the lines of ``log.jsonl`` past ``step`` (and unreadable ones); returns how many."""
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if _log_step(line) is not None and _log_step(line) <= step]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def _log_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None  # a line cut short by a crash


# ----------------------------------------------------------------------------- the loop


def _loader(run: Run) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """This epoch's remaining micro-batches (whole optimizer steps only), with their indices."""
    from torch.utils.data import DataLoader

    batch = int(run.cfg.DATA.BATCH_SIZE)
    run.sampler.set_epoch(run.pos.epoch, start=run.pos.micro * batch)
    workers = int(run.cfg.DATA.NUM_WORKERS)
    loader = DataLoader(
        run.dataset,
        batch_size=batch,
        sampler=run.sampler,
        num_workers=workers,
        drop_last=True,
        pin_memory=run.info.device.type == "cuda",
        persistent_workers=False,
        # the loader draws its worker base seed from this generator, not torch's global one
        generator=torch_generator(run.cfg.SEED, "pretrain-loader", run.pos.epoch),
    )
    remaining = run.steps_per_epoch * run.accum - run.pos.micro
    # the sampler's order is a pure function of (seed, epoch, rank): the indices of batch k
    order = run.sampler.indices()[run.sampler.start :]
    for k, images in enumerate(islice(iter(loader), remaining)):
        yield images, order[k * batch : (k + 1) * batch]


def _autocast(run: Run):
    if run.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=run.amp_dtype)


def mask_generators(seed: int, epoch: int, indices: Sequence[int]) -> list[torch.Generator]:
    """One generator per image, keyed on ``(seed, epoch, sample index)``: an image's masks do
    not depend on its batch, rank or the world size."""
    return [torch_generator(seed, "pretrain-mask", epoch, int(i)) for i in indices]


def _set_generators(run: Run, micro: int, indices: Sequence[int]) -> list[torch.Generator]:
    # drop path draws per batch (the encoder owns it): keyed on rank and step
    keys = (run.cfg.SEED, run.info.rank, run.pos.step, micro)
    if hasattr(run.module, "set_generator"):
        run.module.set_generator(torch_generator(*keys, "pretrain-droppath"))
    return mask_generators(run.cfg.SEED, run.pos.epoch, indices)


def forward_backward(
    run: Run, images: torch.Tensor, micro: int, indices: Sequence[int]
) -> dict[str, torch.Tensor]:
    """One micro-batch: forward under autocast, scaled backward (no DDP sync until the last)."""
    images = images.to(run.info.device, non_blocking=True)
    gen = _set_generators(run, micro, indices)
    last = micro == run.accum - 1
    sync = contextlib.nullcontext() if last or not run.info.distributed else run.model.no_sync()
    with sync:
        with _autocast(run):
            out = run.model(images, gen)
        run.scaler.scale(out["loss"] / run.accum).backward()
    return {k: v.detach() for k, v in out.items()}


def grad_norm(module: nn.Module) -> torch.Tensor:
    """The global L2 norm of the (unscaled, already all-reduced) gradients."""
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return torch.stack(norms).norm() if norms else torch.zeros(())


def optimizer_step(run: Run) -> float:
    """Clip (optional), step, update the scaler, zero the grads, run the method's hook.

    Returns the gradient norm before clipping (logged; the same on every rank after DDP's
    all-reduce).
    """
    clip = float(run.cfg.OPTIM.CLIP_GRAD)
    run.scaler.unscale_(run.optimizer)  # a no-op unless fp16 loss scaling is on
    if clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(run.module.parameters(), clip)
    else:
        norm = grad_norm(run.module)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    hook = getattr(run.module, "after_step", None)
    if hook is not None:
        hook((run.pos.step + 1) / max(run.schedule.total, 1))
    return float(norm)


def _set_lr(run: Run) -> float:
    lr = run.schedule.at(run.pos.step)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    return lr


def _log(run: Run, meter: Meter, lr: float) -> Meter:
    """Write one JSONL line (rank 0) with window means; returns a fresh meter."""
    stats = torch.tensor([meter.loss, meter.target_var], dtype=torch.float64)
    stats = all_reduce_mean(stats.to(run.info.device), run.info).cpu() / max(meter.steps, 1)
    loss, tvar = float(stats[0]), float(stats[1])
    gnorm = meter.grad_norm / max(meter.steps, 1)
    if not math.isfinite(loss):
        raise SarFewShotError(
            f"pretraining loss is {loss} at step {run.pos.step}; lower OPTIM.BASE_LR or set "
            "OPTIM.CLIP_GRAD"
        )
    elapsed = max(time.perf_counter() - meter.since, 1e-9)
    record = {
        "step": run.pos.step,
        "epoch": run.pos.epoch,
        "loss": loss,
        "lr": lr,
        "img_s": meter.images * run.info.world_size / elapsed,
        "target_var": tvar,
        "grad_norm": gnorm,
        **{k: round(v, 3) for k, v in run.clock.totals().items()},
    }
    if run.flops_per_image:
        from sarfewshot.pretrain.flops import mfu

        record["tflops"] = run.flops_per_image * record["img_s"] / 1e12
        share = mfu(run.flops_per_image, record["img_s"], run.info.device)
        if share is not None:
            record["mfu"] = share
    if run.info.is_main:
        with open(run.out / LOG_NAME, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        _write_tensorboard(run, record)
    return Meter()


def _write_tensorboard(run: Run, record: dict[str, Any]) -> None:
    if run.writer is None:
        return
    from sarfewshot.utils.tensorboard import write_scalars

    names = ("loss", "lr", "target_var", "img_s", "grad_norm", "tflops", "mfu")
    values = {k: record[k] for k in names if k in record}
    write_scalars(run.writer, record["step"], values, prefix="pretrain/")
    run.writer.flush()


def open_tensorboard(run: Run) -> None:
    """Rank 0: a SummaryWriter under ``<output>/tensorboard/`` when ``TRAIN.TENSORBOARD``.

    A resumed run purges the events past its checkpoint's step, as ``log.jsonl`` drops its
    lines. Without the tensorboard package the run goes on with a one-line note.
    """
    if not (run.info.is_main and run.cfg.TRAIN.TENSORBOARD):
        return
    from sarfewshot.utils.tensorboard import summary_writer

    try:
        run.writer = summary_writer(run.out / "tensorboard", purge_step=run.pos.step)
    except ConfigError as exc:
        print(f"note: no TensorBoard event files ({exc})", file=sys.stderr)


def close_tensorboard(run: Run) -> None:
    """Flush and close the event file (rank 0)."""
    if run.writer is not None:
        run.writer.close()
        run.writer = None


def _end_of_epoch(run: Run) -> None:
    """Advance to the next epoch and write the epoch's checkpoints (rank 0)."""
    finished = run.pos.epoch
    run.pos.epoch, run.pos.micro = finished + 1, 0
    if not run.info.is_main:
        return
    payload = checkpoint_payload(run, finished)
    every, last = int(run.cfg.TRAIN.SAVE_EVERY), finished + 1 == int(run.cfg.OPTIM.EPOCHS)
    if every and (finished % every == 0 or last):
        save_checkpoint(run.out / f"checkpoint-{finished}.pth", payload)
    save_checkpoint(run.out / CHECKPOINT_LAST, payload)


def _report(run: Run, bar: Any, beat: Any, loss: float, lr: float) -> None:
    """Advance the tqdm bar (terminal) or the heartbeat (redirected stdout)."""
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
    if beat is not None:
        beat.update(run.pos.step, f"loss {loss:.4f}, lr {lr:.2e}")


def train_epoch(run: Run, bar: Any, beat: Any = None) -> None:
    """Run the current epoch from its position, stopping early at ``max_steps``."""
    meter, lr = run.meter, run.schedule.at(run.pos.step)
    every = int(run.cfg.TRAIN.LOG_EVERY)
    for images, indices in _loader(run):
        micro = run.pos.micro % run.accum
        if micro == 0:
            lr = _set_lr(run)
        out = forward_backward(run, images, micro, indices)
        meter.images += images.shape[0]
        run.pos.micro += 1
        if micro != run.accum - 1:
            continue
        run.updating = True
        norm = optimizer_step(run)
        run.pos.step += 1
        run.updating = False
        meter.loss += float(out["loss"])
        meter.target_var += float(out["target_var"])
        meter.grad_norm += norm
        meter.steps += 1
        _report(run, bar, beat, float(out["loss"]), lr)
        if run.pos.step % every == 0 or run.pos.step >= run.max_steps:
            meter = run.meter = _log(run, meter, lr)
        if run.pos.step >= run.max_steps:
            break
        if _should_stop(run):
            raise KeyboardInterrupt
    if run.pos.micro >= run.steps_per_epoch * run.accum:
        _end_of_epoch(run)


def _progress_bar(run: Run):
    if not (run.info.is_main and progress_enabled()):
        return None
    from tqdm import tqdm

    return tqdm(total=run.max_steps, initial=run.pos.step, desc=f"pretrain {run.cfg.METHOD}")


def _heartbeat(run: Run):
    """One progress line per ``SARFEWSHOT_PROGRESS_INTERVAL`` seconds when stdout is a file."""
    from sarfewshot.utils.progress import Heartbeat, heartbeat_wanted

    if not (run.info.is_main and heartbeat_wanted()):
        return None
    return Heartbeat(f"pretrain {run.cfg.METHOD}", total=run.max_steps, unit="step")


def _announce(run: Run) -> None:
    if not run.info.is_main:
        return
    print(
        f"pretrain {run.cfg.METHOD}: {len(run.dataset)} images, {run.info.world_size} process(es)"
        f" on {run.info.device}, {run.steps_per_epoch} steps/epoch, total batch "
        f"{run.total_batch}, lr {run.schedule.lr:.3g}, steps {run.pos.step}->{run.max_steps}, "
        f"output {run.out}"
        + (f", {run.flops_per_image / 1e9:.3g} GFLOP per image" if run.flops_per_image else ""),
        flush=True,
    )


class PretrainInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run; ``checkpoint`` holds step ``step`` (None: nothing was saved)."""

    def __init__(self, checkpoint: Path | None, step: int) -> None:
        super().__init__(f"pretraining interrupted at step {step}")
        self.checkpoint, self.step = checkpoint, step


def _should_stop(run: Run) -> bool:
    """Whether Ctrl-C was pressed on any process (all ranks stop at the same step)."""
    if not run.info.distributed:
        return run.stop_requested
    flag = torch.tensor([float(run.stop_requested)], device=run.info.device)
    return bool(all_reduce_mean(flag, run.info).item() > 0)


@contextlib.contextmanager
def _graceful_sigint(run: Run) -> Iterator[None]:
    """First Ctrl-C: finish the step, then stop (see :func:`train`); the second one stops now."""
    previous = signal.getsignal(signal.SIGINT)
    # handlers can only be set from the main thread; an ignored SIGINT (nohup) stays ignored
    if threading.current_thread() is not threading.main_thread() or previous == signal.SIG_IGN:
        yield
        return
    if previous is None:  # installed outside Python: restore Python's default instead
        previous = signal.default_int_handler

    def request_stop(signum: int, frame: Any) -> None:
        run.stop_requested = True
        signal.signal(signal.SIGINT, previous)
        if run.info.is_main:
            print("\ninterrupt: saving after this step (Ctrl-C again to stop now)", file=sys.stderr)

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def save_interrupted(run: Run) -> Path | None:
    """Write ``checkpoint-last.pth`` at the last finished step (rank 0); None if unsafe."""
    if run.updating:
        return None  # the optimizer was cut mid-update: the weights match no step
    # micro-batches of an unfinished step are redone on resume (their gradients are not saved)
    run.pos.micro -= run.pos.micro % run.accum
    last = run.out / CHECKPOINT_LAST
    if run.info.is_main:
        save_checkpoint(last, checkpoint_payload(run, run.pos.epoch))
    return last


def train(run: Run) -> Path:
    """Train until ``max_steps`` or the last epoch; returns ``checkpoint-last.pth``.

    Raises:
        PretrainInterrupted: on Ctrl-C, after saving the last finished step.
    """
    run.module.train()
    bar, beat = _progress_bar(run), _heartbeat(run)
    start, first = time.perf_counter(), run.pos.step
    run.clock.start()
    try:
        epochs = int(run.cfg.OPTIM.EPOCHS)
        with _graceful_sigint(run):
            while run.pos.step < run.max_steps and run.pos.epoch < epochs:
                train_epoch(run, bar, beat)
    except KeyboardInterrupt:
        raise PretrainInterrupted(save_interrupted(run), run.pos.step) from None
    finally:
        if bar is not None:
            bar.close()
    last = run.out / CHECKPOINT_LAST
    if run.info.is_main and (run.pos.micro or not last.is_file()):
        # stopped mid-epoch (max steps): the weights belong to the epoch in progress
        save_checkpoint(last, checkpoint_payload(run, run.pos.epoch))
    _print_throughput(run, run.pos.step - first, time.perf_counter() - start)
    barrier(run.info)
    return last


def count_flops(run: Run) -> None:
    """Rank 0: training FLOPs per image of the model's geometry (``TRAIN.COUNT_FLOPS``)."""
    if not (run.info.is_main and run.cfg.TRAIN.COUNT_FLOPS):
        return
    from sarfewshot.pretrain.flops import train_flops_per_image

    run.flops_per_image = train_flops_per_image(run.cfg, run.module, run.info.device)


def _print_throughput(run: Run, steps: int, seconds: float) -> None:
    if not run.info.is_main or steps < 1 or seconds <= 0:
        return
    rate = steps * run.total_batch / seconds
    text = f"throughput: {rate:.1f} images/s over {steps} step(s)"
    if run.flops_per_image:
        from sarfewshot.pretrain.flops import throughput_line

        text += ", " + throughput_line(run.flops_per_image, rate, run.info.device)
    print(text, flush=True)


def existing_checkpoint(out: Path) -> Path | None:
    """The checkpoint a new run in ``out`` would overwrite: the last one, else the newest."""
    if (out / CHECKPOINT_LAST).is_file():
        return out / CHECKPOINT_LAST
    found = sorted(out.glob("checkpoint-*.pth"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _checkpoint_step(path: Path) -> str:
    try:
        return str(load_checkpoint(path)["resume"]["step"])
    except Exception:  # noqa: BLE001 - any unreadable file is reported, not raised
        return "unknown (unreadable)"


def guard_output(cfg: CfgNode, overwrite: bool) -> None:
    """Refuse to start afresh over a checkpoint; ``overwrite`` deletes the old run's files."""
    resuming = bool(str(cfg.TRAIN.RESUME).strip())
    if resuming and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one")
    out = Path(cfg.OUTPUT_DIR)
    found = None if resuming else existing_checkpoint(out)
    if found is None:
        return
    if not overwrite:
        raise ConfigError(
            f"{found} already holds a pretraining checkpoint (step {_checkpoint_step(found)}); "
            "pass --resume to continue it or --overwrite to start afresh and delete it"
        )
    if os.environ.get("RANK", "0") != "0":
        return
    old = [*out.glob("checkpoint-*.pth"), out / LOG_NAME]
    for path in old:
        path.unlink(missing_ok=True)
    print(f"--overwrite: deleted the previous run's checkpoints and {LOG_NAME} in {out}")


def run_pretraining(cfg: CfgNode, overwrite: bool = False) -> Path:
    """Run (or resume) the pretraining described by a frozen config; returns the last checkpoint.

    Args:
        cfg: the frozen config (``TRAIN.RESUME`` set to resume).
        overwrite: start afresh in an ``OUTPUT_DIR`` that holds a checkpoint, deleting the old
            checkpoints and log; without it (and without resuming) such a folder is refused.

    Raises:
        SarFewShotError: the output folder holds a checkpoint and neither resume nor overwrite.
        PretrainInterrupted: Ctrl-C (the last finished step is saved first).
    """
    guard_output(cfg, overwrite)
    info = init_distributed(cfg.DEVICE)
    try:
        run = build_run(cfg, info)
        path = resume_path(cfg)
        if path is not None:
            resume(run, path)
        elif info.is_main:
            # a fresh start: lines left by a run that never saved a checkpoint are not ours
            truncate_log(run.out / LOG_NAME, 0)
            if cfg.TRAIN.RESUME:
                print(f"--resume: no {CHECKPOINT_LAST} in {run.out}; starting from scratch")
        if info.is_main:
            run.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run.out / "config.yaml", cfg.dump())
        count_flops(run)
        _announce(run)
        open_tensorboard(run)
        barrier(info)
        try:
            return train(run)
        finally:
            close_tensorboard(run)
    finally:
        cleanup(info)


def resolve_config(config: str | os.PathLike | None) -> str | None:
    """A YAML path, or the name of a bundled preset (``sarjepa_tiny`` -> configs/pretrain/...)."""
    if config is None:
        return None
    text = os.fspath(config)
    if os.path.exists(text) or os.sep in text or text.endswith((".yaml", ".yml")):
        return text
    from sarfewshot.configs import config_path

    try:
        return str(config_path("pretrain", f"{text}.yaml"))
    except FileNotFoundError as exc:
        raise ConfigError(f"--config {text}: {exc}") from None


def pretrain(
    cfg: CfgNode | None = None,
    *,
    config: str | os.PathLike | None = None,
    method: str | None = None,
    data: Sequence[str | os.PathLike] | None = None,
    output: str | os.PathLike | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    img_size: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    resume: bool | str = False,
    overwrite: bool = False,
    opts: Sequence[str] = (),
) -> Path:
    """Pretrain a backbone; returns the path of the final checkpoint (``checkpoint-last.pth``).

    Example (tiny SAR-JEPA, 64 px, 30 steps on CPU)::

        pretrain(config="sarjepa_tiny", data=["chips/"], output="runs/tiny", max_steps=30)

    Args:
        cfg: a ready config (the other arguments are then ignored), else built from:
        config: a YAML file or bundled preset name (``configs/pretrain/<name>.yaml``).
        method, data, output, epochs, max_steps, batch_size, img_size, seed, device: as the CLI
            flags of the same names.
        resume: True to continue from ``<output>/checkpoint-last.pth`` when it exists, or a
            checkpoint path.
        overwrite: start afresh even though ``output`` holds a checkpoint (its checkpoints and
            log are deleted); without it, or ``resume``, such a folder raises SarFewShotError.
        opts: trailing ``KEY VALUE`` overrides.

    Raises:
        PretrainInterrupted: on Ctrl-C, once ``checkpoint-last.pth`` holds the last finished step.
    """
    if cfg is None:
        args = argparse.Namespace(
            method=method,
            data=[os.fspath(d) for d in data] if data else None,
            output=os.fspath(output) if output is not None else None,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            img_size=img_size,
            seed=seed,
            device=device,
        )
        extra = list(opts)
        if resume:
            extra += ["TRAIN.RESUME", "auto" if resume is True else os.fspath(resume)]
        cfg = setup_pretrain_cfg(resolve_config(config), args=args, opts=extra)
    return run_pretraining(cfg, overwrite=overwrite)
