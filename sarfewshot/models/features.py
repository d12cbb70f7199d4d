"""Batched feature extraction with a frozen backbone, and the numeric precision of evaluation.

Evaluation runs in float32 by default on every device, as the SAR-JEPA release did. ``bf16``
(config ``MODEL.PRECISION``, ``sarfewshot eval --precision bf16``) is an explicit opt-in: the
forward passes run under ``torch.autocast`` with bfloat16 on the device in use (CUDA autocast on a
GPU, CPU autocast on a CPU), so a bf16 cell is bf16 wherever it runs.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from sarfewshot.errors import ConfigError
from sarfewshot.utils.precision import PRECISIONS
from sarfewshot.utils.progress import heartbeat_iter, progress_enabled


def check_precision(precision: str, key: str = "MODEL.PRECISION") -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ConfigError naming ``key``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"{key} must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def precision_context(
    device: str | torch.device, precision: str = "fp32"
) -> contextlib.AbstractContextManager:
    """The context forward passes run in: nothing for fp32, bf16 autocast on ``device`` for bf16."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def _as_float(batch: torch.Tensor) -> torch.Tensor:
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    return batch if batch.is_floating_point() else batch.float()


def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
    precision: str = "fp32",
) -> torch.Tensor:
    """Run ``model.forward_features`` over ``images`` in batches and return float32 features.

    Args:
        model: a backbone (``forward_features(x) -> (B, D)``); moved to ``device`` and put in
            eval mode for the call (its train/eval mode is restored afterwards).
        images: ``(N, C, S, S)``; uint8 is scaled to [0, 1], float is used as is.
        batch_size: images per forward pass.
        device: where to run.
        progress: allow a progress bar (drawn when
            :func:`sarfewshot.utils.progress.progress_enabled` also allows it).
        precision: ``fp32`` (default) or ``bf16`` (autocast; see :func:`precision_context`).

    Returns:
        ``(N, D)`` float32 features on the CPU.
    """
    if images.ndim != 4:
        raise ValueError(
            f"extract_features: expected images (N, C, S, S), got {tuple(images.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"extract_features: batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    starts = range(0, images.shape[0], batch_size)
    if progress and progress_enabled():
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="features", unit="batch", leave=False)
    starts = heartbeat_iter(starts, "features", unit="batch")  # log lines when redirected
    autocast = precision_context(device, precision)
    chunks = []
    try:
        with torch.inference_mode(), autocast:
            for start in starts:
                batch = _as_float(images[start : start + batch_size].to(device, non_blocking=True))
                chunks.append(model.forward_features(batch).float().cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return torch.zeros(0, int(getattr(model, "num_features", 0)), dtype=torch.float32)
    return torch.cat(chunks)
