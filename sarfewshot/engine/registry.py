"""Trainer and evaluator registries (Dassl's ``TRAINER_REGISTRY`` / ``EVALUATOR_REGISTRY``)."""

from __future__ import annotations

from sarfewshot.utils.registry import Registry

TRAINER_REGISTRY = Registry("trainer")
EVALUATOR_REGISTRY = Registry("evaluator")


def _load_plugins() -> None:
    # Protocol plug-ins register themselves on import (see ``trainers/``).
    import sarfewshot.trainers  # noqa: F401


def get_trainer(name: str) -> type:
    """Return the trainer/protocol class registered as ``name``."""
    _load_plugins()
    return TRAINER_REGISTRY.get(name)


def list_trainers() -> list[str]:
    """Canonical names of every registered trainer/protocol."""
    _load_plugins()
    return TRAINER_REGISTRY.list()
