"""Self-supervised pretraining: SAR-JEPA and its baselines.

- :mod:`.targets`: the multi-scale SAR gradient target (``ratio_gradient``, ``sarjepa_target``)
  and the baselines' targets (pixels, low-pass, HOG, SAR-HOG).
- :mod:`.masking`: local windows, MAE random masks, I-JEPA multi-block masks.
- :mod:`.model` / :mod:`.plain` / :mod:`.methods`: SAR-JEPA's model, the MAE and I-JEPA
  baselines, and the ``PRETRAIN_METHODS`` registry.
- :mod:`.data`: unlabelled images, the release's augmentation, the resumable sampler.
- :mod:`.train` / :mod:`.state` / :mod:`.checkpoint` / :mod:`.telemetry` / :mod:`.distributed`:
  the step and loop, run state and schedule, checkpoints and exact resume, log and progress, DDP.

Heavy modules are imported lazily so ``import sarfewshot.pretrain`` stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "ratio_gradient": "targets",
    "sarjepa_target": "targets",
    "PRETRAIN_METHODS": "methods",
    "list_methods": "methods",
    "build_pretrain_model": "methods",
    "setup_pretrain_cfg": "config",
    "pretrain": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sarfewshot.pretrain' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"sarfewshot.pretrain.{_EXPORTS[name]}"), name)
