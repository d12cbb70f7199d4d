"""Checkpoints of a pretraining run: the payload, atomic writes, safe loading, exact resume
(position, RNG states, clock) and the guard against overwriting a run.

Checkpoints (rank 0, atomic) go to ``OUTPUT_DIR``: ``checkpoint-<epoch>.pth`` after 0-based epochs
``epoch % TRAIN.SAVE_EVERY == 0`` and after the last epoch (the release's naming), and
``checkpoint-last.pth`` after every epoch and when the run stops. Each holds the release's keys
``model`` (state dict, no ``module.`` prefix), ``optimizer``, ``epoch`` (the 0-based epoch the
weights belong to), ``scaler``, ``args`` (an ``argparse.Namespace`` of plain values), plus
``resume`` (step, next epoch and position in it, RNG states as tensors and ints, world size,
batch size, and the training wall and CPU seconds so far) and ``config`` (the YAML text).
Everything loads with ``torch.load(weights_only=True)`` and ``argparse.Namespace`` allow-listed.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from yacs.config import CfgNode

from sarfewshot.errors import ConfigError, WeightsError
from sarfewshot.pretrain.methods import encoder_arch
from sarfewshot.pretrain.provenance import describe
from sarfewshot.pretrain.state import Clock, Position, Run
from sarfewshot.pretrain.telemetry import LOG_NAME, append_log, truncate_log
from sarfewshot.utils.io import atomic_write_bytes

CHECKPOINT_LAST = "checkpoint-last.pth"


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
        "data": run.data.record() if run.data is not None else None,
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
    event = _check_data(ckpt, run, path)
    if run.info.is_main:
        truncate_log(run.out / LOG_NAME, run.pos.step)
        if event is not None:
            append_log(run.out / LOG_NAME, event)


def _check_data(ckpt: dict, run: Run, path: Path) -> dict[str, Any] | None:
    """Refuse to resume on other data than the checkpoint's, unless TRAIN.ALLOW_DATA_CHANGE.

    Returns the ``log.jsonl`` line of an allowed change (None when the data match). A changed
    run's record keeps the earlier images' hashes: its weights have seen them too, and so does
    every later resume on the new data.
    """
    old, new = ckpt.get("data"), run.data.record()
    if not isinstance(old, dict) or "fingerprint" not in old:
        if run.info.is_main:
            print(
                f"warning: --resume: {path} carries no pretraining data record (written by an "
                "older sarfewshot); cannot check that --data is what it trained on",
                file=sys.stderr,
            )
        return None
    if old["fingerprint"] == new["fingerprint"]:
        if _holds_more(old, new):  # the union of an earlier allowed change: keep it
            run.data.absorb(old)
        return None
    text = f"--resume: {path} was trained on {describe(old)}; --data now gives {describe(new)}"
    if not run.cfg.TRAIN.ALLOW_DATA_CHANGE:
        raise ConfigError(
            f"{text}. Resume on the same data, or pass --allow-data-change to continue on these "
            "images (steps per epoch and the learning-rate schedule change with them)"
        )
    if run.info.is_main:
        print(f"{text}: continuing (--allow-data-change)", file=sys.stderr)
    run.data.absorb(old)
    if run.pos.micro >= run.steps_per_epoch * run.accum:
        run.pos.epoch, run.pos.micro = run.pos.epoch + 1, 0  # past the shorter epoch's end
    return {
        "step": run.pos.step,
        "event": "data_change",
        "allowed_by": "--allow-data-change",
        "from": {"fingerprint": old["fingerprint"], "files": old.get("files")},
        "to": {"fingerprint": new["fingerprint"], "files": new["files"]},
    }


def _holds_more(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the checkpoint's record holds hashes beyond the current data's (images seen
    before an allowed data change); comparing counts avoids decoding the set on each resume."""
    old_c, new_c = old.get("content") or {}, new.get("content") or {}
    if old_c.get("method") != "sha256" or new_c.get("method") != "sha256":
        return False
    return int(old_c["sha256"].shape[0]) > int(new_c["sha256"].shape[0])


def end_of_epoch(run: Run) -> None:
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


def guard_output(cfg: CfgNode, overwrite: bool) -> list[Path]:
    """Refuse to start afresh over a checkpoint; with ``overwrite``, the old run's files that
    :func:`delete_old_run` removes once the new run is built (a mistyped ``--data`` must not
    cost the old checkpoints)."""
    resuming = bool(str(cfg.TRAIN.RESUME).strip())
    if resuming and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one")
    out = Path(cfg.OUTPUT_DIR)
    found = None if resuming else existing_checkpoint(out)
    if found is None:
        return []
    if not overwrite:
        raise ConfigError(
            f"{found} already holds a pretraining checkpoint (step {_checkpoint_step(found)}); "
            "pass --resume to continue it or --overwrite to start afresh and delete it"
        )
    if os.environ.get("RANK", "0") != "0":
        return []
    return [*out.glob("checkpoint-*.pth"), out / LOG_NAME]


def delete_old_run(old: Sequence[Path]) -> None:
    """Delete the files :func:`guard_output` returned (``--overwrite``), saying so."""
    if not old:
        return
    for path in old:
        path.unlink(missing_ok=True)
    print(f"--overwrite: deleted the previous run's checkpoints and {LOG_NAME} in {old[0].parent}")
