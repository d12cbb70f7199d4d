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

#: ``TRAINER`` nodes that every config's hash holds, whichever protocol it runs: those of the
#: protocols the first records were hashed with (each record's config holds every protocol's
#: node). The node of a protocol added since (``LORA``, ``PARTIAL``, ...) enters only the hash
#: of its own cells (``TRAINER.NAME``), so adding a protocol never changes the hash, hence the
#: identity, of the cells of other protocols already in a run folder.
HASHED_TRAINER_NODES = frozenset({"FINETUNE", "KNN", "LINEAR", "LOGREG", "PROTOTYPE"})

#: Keys added after records existed, hashed only when set away from their default: at the
#: default they leave every earlier config hash as it was (calibrated cells never merge with the
#: fixed mapping's, uncalibrated ones still merge with older records).
UNSET_DEFAULTS = {
    "MODEL.BACKBONE.INPUT_CALIBRATION": "none",
    "DATASET.VAL_POOL_RULE": "random",
}


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
    tree = hashed_tree(config, exclude)
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def hashed_tree(
    config: Mapping[str, Any], exclude: Sequence[str] = CELL_CONFIG_FIELDS
) -> dict[str, Any]:
    """The part of ``config`` that :func:`config_fingerprint` hashes, as plain JSON values
    (so a conflict can name the keys that differ by comparing two of these)."""
    tree = json.loads(json.dumps(config, default=jsonable, sort_keys=True))
    for dotted in exclude:
        _drop_dotted(tree, dotted)
    for dotted, default in UNSET_DEFAULTS.items():
        _drop_dotted(tree, dotted, only_if=default)
    _drop_other_trainer_nodes(tree)
    return tree


def _drop_other_trainer_nodes(tree: dict[str, Any]) -> None:
    """Drop the ``TRAINER`` nodes of other protocols than ``TRAINER.NAME``'s, except
    :data:`HASHED_TRAINER_NODES` (they cannot change what the cell computes). Nested configs
    and flat ``"TRAINER.LORA.RANK"`` keys (configs parsed from Dassl logs) alike."""
    trainer = tree.get("TRAINER")
    if isinstance(trainer, dict):
        own = str(trainer.get("NAME", "")).upper()
        for key in [k for k, v in trainer.items() if isinstance(v, dict)]:
            if key not in HASHED_TRAINER_NODES and key != own:
                del trainer[key]
        return
    own = str(tree.get("TRAINER.NAME", "")).upper()
    for key in [k for k in tree if k.startswith("TRAINER.") and k.count(".") >= 2]:
        node = key.split(".")[1]
        if node not in HASHED_TRAINER_NODES and node != own:
            del tree[key]
