"""The pretraining loop: data, model, AdamW with warm-up + half-cosine, AMP, DDP, checkpoints.

Entry points: :func:`pretrain` (Python) and ``sarfewshot pretrain`` (CLI), the same under
``torchrun --nproc_per_node=N``.

The run is split by concern: :mod:`.state` (run state and schedule), :mod:`.checkpoint`
(the checkpoint format, resume, RNG states), :mod:`.telemetry` (log, TensorBoard, progress,
FLOPs); this module holds the step and the loop.

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
import os
import signal
import sys
import threading
import time
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from yacs.config import CfgNode

from sarfewshot.errors import ConfigError
from sarfewshot.pretrain.checkpoint import (
    CHECKPOINT_LAST,
    capture_rng,
    checkpoint_payload,
    delete_old_run,
    end_of_epoch,
    guard_output,
    load_checkpoint,
    restore_rng,
    resume,
    resume_path,
    save_checkpoint,
)
from sarfewshot.pretrain.config import setup_pretrain_cfg
from sarfewshot.pretrain.distributed import all_reduce_mean, barrier, cleanup, init_distributed
from sarfewshot.pretrain.state import Run, Schedule, absolute_lr, amp_dtype, build_run
from sarfewshot.pretrain.telemetry import (
    LOG_NAME,
    announce,
    close_tensorboard,
    count_flops,
    heartbeat,
    log_exclusion,
    log_window,
    open_tensorboard,
    print_throughput,
    progress_bar,
    report_step,
    truncate_log,
)
from sarfewshot.utils.io import atomic_write_text
from sarfewshot.utils.seeding import torch_generator

# names other modules and the tests import from here
__all__ = [
    "CHECKPOINT_LAST",
    "LOG_NAME",
    "PretrainInterrupted",
    "Schedule",
    "absolute_lr",
    "amp_dtype",
    "capture_rng",
    "load_checkpoint",
    "mask_generators",
    "pretrain",
    "resolve_config",
    "restore_rng",
    "run_pretraining",
]


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
        report_step(run, bar, beat, float(out["loss"]), lr)
        if run.pos.step % every == 0 or run.pos.step >= run.max_steps:
            meter = run.meter = log_window(run, meter, lr)
        if run.pos.step >= run.max_steps:
            break
        if _should_stop(run):
            raise KeyboardInterrupt
    if run.pos.micro >= run.steps_per_epoch * run.accum:
        end_of_epoch(run)


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
    bar, beat = progress_bar(run), heartbeat(run)
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
    print_throughput(run, run.pos.step - first, time.perf_counter() - start)
    barrier(run.info)
    return last


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
    old_run = guard_output(cfg, overwrite)
    info = init_distributed(cfg.DEVICE)
    try:
        run = build_run(cfg, info)
        delete_old_run(old_run)  # only once the new run's data and model are built
        path = resume_path(cfg)
        if path is not None:
            resume(run, path)
        elif info.is_main:
            # a fresh start: lines left by a run that never saved a checkpoint are not ours
            truncate_log(run.out / LOG_NAME, 0)
            log_exclusion(run)
            if cfg.TRAIN.RESUME:
                print(f"--resume: no {CHECKPOINT_LAST} in {run.out}; starting from scratch")
        if info.is_main:
            run.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run.out / "config.yaml", cfg.dump())
        count_flops(run)
        announce(run)
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
