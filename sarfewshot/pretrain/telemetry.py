"""Telemetry of a pretraining run: ``log.jsonl``, TensorBoard, progress bar or heartbeat, the
start line and the FLOPs count (all written by rank 0)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sarfewshot.errors import ConfigError, SarFewShotError
from sarfewshot.pretrain.distributed import all_reduce_mean
from sarfewshot.pretrain.state import Meter, Run
from sarfewshot.utils.io import atomic_write_text
from sarfewshot.utils.progress import progress_enabled

LOG_NAME = "log.jsonl"


def log_window(run: Run, meter: Meter, lr: float) -> Meter:
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
        append_log(run.out / LOG_NAME, record)
        write_tensorboard(run, record)
    return Meter()


def write_tensorboard(run: Run, record: dict[str, Any]) -> None:
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


def report_step(run: Run, bar: Any, beat: Any, loss: float, lr: float) -> None:
    """Advance the tqdm bar (terminal) or the heartbeat (redirected stdout)."""
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
    if beat is not None:
        beat.update(run.pos.step, f"loss {loss:.4f}, lr {lr:.2e}")


def progress_bar(run: Run):
    if not (run.info.is_main and progress_enabled()):
        return None
    from tqdm import tqdm

    return tqdm(total=run.max_steps, initial=run.pos.step, desc=f"pretrain {run.cfg.METHOD}")


def heartbeat(run: Run):
    """One progress line per ``SARFEWSHOT_PROGRESS_INTERVAL`` seconds when stdout is a file."""
    from sarfewshot.utils.progress import Heartbeat, heartbeat_wanted

    if not (run.info.is_main and heartbeat_wanted()):
        return None
    return Heartbeat(f"pretrain {run.cfg.METHOD}", total=run.max_steps, unit="step")


def announce(run: Run) -> None:
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
    excluded = run.data.excluded if run.data is not None else {}
    if excluded.get("specs"):
        print(
            f"--exclude-split: {excluded['count']} pretraining image(s) left out, matching "
            f"{excluded['held_out']} held-out image(s) by content sha256",
            flush=True,
        )


def log_exclusion(run: Run) -> None:
    """Rank 0, fresh start: one ``log.jsonl`` line saying what ``--exclude-split`` left out."""
    excluded = run.data.excluded if run.data is not None else {}
    if run.info.is_main and excluded.get("specs"):
        append_log(run.out / LOG_NAME, {"step": 0, "event": "exclude_split", **excluded})


def count_flops(run: Run) -> None:
    """Rank 0: training FLOPs per image of the model's geometry (``TRAIN.COUNT_FLOPS``)."""
    if not (run.info.is_main and run.cfg.TRAIN.COUNT_FLOPS):
        return
    from sarfewshot.pretrain.flops import train_flops_per_image

    run.flops_per_image = train_flops_per_image(run.cfg, run.module, run.info.device)


def print_throughput(run: Run, steps: int, seconds: float) -> None:
    if not run.info.is_main or steps < 1 or seconds <= 0:
        return
    rate = steps * run.total_batch / seconds
    text = f"throughput: {rate:.1f} images/s over {steps} step(s)"
    if run.flops_per_image:
        from sarfewshot.pretrain.flops import throughput_line

        text += ", " + throughput_line(run.flops_per_image, rate, run.info.device)
    print(text, flush=True)


def truncate_log(path: Path, step: int) -> int:
    """Drop the lines of ``log.jsonl`` past ``step`` (and unreadable ones); returns how many."""
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if (at := _log_step(line)) is not None and at <= step]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def _log_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None  # a line cut short by a crash


def append_log(path: Path, event: dict[str, Any]) -> None:
    """Add one event line (a ``step`` and an ``event`` name) to ``log.jsonl``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")
