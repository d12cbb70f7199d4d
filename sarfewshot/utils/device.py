"""Which torch device a ``--device`` value means, for evaluation and pretraining alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sarfewshot.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(preference: str | None = "auto", local_rank: int | None = None) -> torch.device:
    """The torch device of a ``--device`` value, checked against this machine.

    Args:
        preference: ``auto`` (or empty: CUDA when available, else the CPU), ``cpu``, ``cuda``,
            ``cuda:N`` or another torch device string.
        local_rank: under torchrun, this process's GPU: a bare ``cuda`` becomes
            ``cuda:<local_rank>``; None keeps ``cuda`` (the current device).

    Raises:
        ConfigError: naming ``--device`` when CUDA is asked for but unavailable, or when the
            value is not a torch device.
    """
    import torch

    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {preference}: CUDA is not available on this machine")
    if pref == "cuda" and local_rank is not None:
        pref = f"cuda:{local_rank}"
    try:
        return torch.device(pref)
    except RuntimeError:
        raise ConfigError(
            f"--device {preference!r} is not a torch device (auto, cpu, cuda, cuda:1)"
        ) from None
