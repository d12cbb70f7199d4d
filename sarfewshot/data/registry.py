"""The dataset registry (Dassl's ``DATASET_REGISTRY``) and its helpers."""

from __future__ import annotations

from sarfewshot.utils.registry import Registry

DATASET_REGISTRY = Registry("dataset")


def _load_plugins() -> None:
    # The plug-ins register themselves on import; importing here keeps `list_datasets` complete
    # without making `sarfewshot.data` import every dataset module eagerly.
    import sarfewshot.datasets  # noqa: F401


def get_dataset(name: str) -> type:
    """Return the dataset class registered as ``name`` (aliases such as ``mstar`` accepted)."""
    _load_plugins()
    return DATASET_REGISTRY.get(name)


def list_datasets() -> list[str]:
    """Canonical names of every registered dataset."""
    _load_plugins()
    return DATASET_REGISTRY.list()
