"""The config hash: one sha256 of a resolved config, shared by the engine and the records.

It sits in ``utils`` because both the engine (which computes a cell's hash before running it)
and :mod:`sarfewshot.results` (which writes it and hashes imported Dassl configs) need it, and
``results`` must not import the engine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

#: Config keys that do not change what a cell computes: per-cell fields (seed, shots, output and
#: split folders) and machine-local paths (the weights are identified by their sha256 instead).
CELL_CONFIG_FIELDS = (
    "SEED",
    "OUTPUT_DIR",
    "RESUME",
    "USE_CUDA",
    "VERBOSE",
    "DATASET.ROOT",
    "DATASET.NUM_SHOTS",
    "DATASET.SPLIT_DIR",
    "DATALOADER.NUM_WORKERS",
    "MODEL.INIT_WEIGHTS",
)

#: Keys added after records existed, hashed only when set away from their default: at the
#: default they leave every earlier config hash as it was (calibrated cells never merge with the
#: fixed mapping's, uncalibrated ones still merge with older records).
UNSET_DEFAULTS = {"MODEL.BACKBONE.INPUT_CALIBRATION": "none"}


def jsonable(obj: Any) -> Any:
    """JSON stand-in for values ``json`` cannot write (tuples, sets, numpy scalars/arrays)."""
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    return str(obj)


def _drop_dotted(tree: Mapping[str, Any], dotted: str, only_if: Any = None) -> None:
    node: Any = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            return
    if isinstance(node, dict) and (only_if is None or node.get(leaf) == only_if):
        node.pop(leaf, None)


def config_fingerprint(
    config: Mapping[str, Any], exclude: Sequence[str] = CELL_CONFIG_FIELDS
) -> str:
    """sha256 of a resolved config without the per-cell / machine-local keys.

    Args:
        config: the resolved config: nested dicts or a yacs ``CfgNode`` (a dict).
        exclude: dotted key paths left out (default :data:`CELL_CONFIG_FIELDS`).

    Returns:
        A hex digest that is equal for configs that compute the same thing.
    """
    tree = json.loads(json.dumps(config, default=jsonable, sort_keys=True))
    for dotted in exclude:
        _drop_dotted(tree, dotted)
    for dotted, default in UNSET_DEFAULTS.items():
        _drop_dotted(tree, dotted, only_if=default)
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
