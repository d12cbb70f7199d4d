"""Configs: one resolved config per (backbone, dataset, protocol), one frozen copy per cell."""

from __future__ import annotations

from typing import Any

from sarfewshot.engine.grid.plan import BackboneRequest, GridRequest
from sarfewshot.engine.grid.resolve import ResolvedDataset


def build_protocol_cfg(
    req: GridRequest,
    protocol: type,
    backbone: BackboneRequest,
    dataset: ResolvedDataset,
    device: str = "cpu",
) -> Any:
    """The resolved config of one (protocol, backbone, dataset).

    Merge order: defaults and extensions -> the dataset's preset (its crop) -> the protocol's
    bundled YAML -> ``--config`` -> the command's flags -> trailing ``KEY VALUE`` options.
    """
    from sarfewshot.engine import config as C

    cfg = C.get_cfg_default()
    C.extend_cfg(cfg)
    crop = getattr(dataset.obj, "crop_size", None)
    cfg.INPUT.SAR.CROP = int(crop) if crop else 0
    explicit: set[str] = set()
    if protocol.preset:
        from sarfewshot.configs import config_path

        explicit |= C.merge_file(cfg, config_path(*protocol.preset))
    if req.config_file:
        explicit |= C.merge_file(cfg, req.config_file)
    cfg.TRAINER.NAME = protocol.name
    cfg.DATASET.NAME = dataset.name
    cfg.DATASET.ROOT = str(dataset.listing.root)
    cfg.OUTPUT_DIR = str(req.output)
    cfg.USE_CUDA = str(device).startswith("cuda")
    cfg.MODEL.BACKBONE.NAME = backbone.name
    cfg.MODEL.BACKBONE.ARCH = backbone.arch or ""
    cfg.MODEL.INIT_WEIGHTS = backbone.weights or ""
    if req.img_size:
        cfg.INPUT.SIZE = (int(req.img_size), int(req.img_size))
    explicit |= C.merge_opts(cfg, req.opts)
    if not req.feature_cache and "LINEAR" in cfg.TRAINER:
        cfg.TRAINER.LINEAR.FEATURE_CACHE = False  # the request's switch is the one source
    C.apply_channel_rule(cfg, explicit)
    C.check_cfg(cfg)
    cfg.freeze()
    return cfg


def cell_cfg(base: Any, shots: int, seed: int) -> Any:
    """A frozen copy of ``base`` with the cell's ``SEED`` and ``DATASET.NUM_SHOTS``."""
    cfg = base.clone()
    cfg.defrost()
    cfg.SEED = int(seed)
    cfg.DATASET.NUM_SHOTS = int(shots)
    cfg.freeze()
    return cfg


def cfg_dict(cfg: Any) -> dict[str, Any]:
    """The config as nested plain dicts (what a record stores)."""
    from sarfewshot.engine.config import cfg_to_dict

    return cfg_to_dict(cfg)


def probe_cfg(req: GridRequest) -> Any:
    """Defaults + ``--config`` + trailing options: what the request says before any protocol
    preset (its ``DATASET.ROOT``, ``INPUT.SIZE`` and dataset options)."""
    from sarfewshot.engine import config as C

    cfg = C.get_cfg_default()
    C.extend_cfg(cfg)
    if req.config_file:
        C.merge_file(cfg, req.config_file)
    C.merge_opts(cfg, req.opts)
    return cfg


# same numbers either way (a missing class shows in the listing and the fingerprint, not here)
FINGERPRINT_EXCLUDE_EXTRA = ("TRAINER.LINEAR.FEATURE_CACHE", "DATASET.SAR.ALLOW_MISSING_CLASSES")


def config_sha(cfg: Any) -> str:
    """The config fingerprint stored in records (seed, K, paths and cache switches left out).

    Keys added since records existed are left out at their defaults
    (:data:`sarfewshot.utils.confighash.UNSET_DEFAULTS`, e.g. ``DATASET.VAL_POOL_RULE random``),
    so earlier records keep their fingerprint; ``blocks`` changes it (and the split files).
    """
    from sarfewshot.utils.confighash import CELL_CONFIG_FIELDS, config_fingerprint

    return config_fingerprint(cfg_dict(cfg), exclude=CELL_CONFIG_FIELDS + FINGERPRINT_EXCLUDE_EXTRA)


# Flags that set a config key, so a conflict can name what the user typed.
KEY_FLAGS = {
    "INPUT.SIZE": "--img-size",
    "MODEL.PRECISION": "--precision",
    "TEST.SPLIT": "--eval-split",
}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``KEY recorded vs current`` for each fingerprinted key whose values differ.

    Keys the fingerprint leaves out (seed, K, paths, cache switches) are not compared; a key
    set by a flag is named with it, e.g. ``INPUT.SIZE (--img-size) 32 vs 64``.
    """
    from sarfewshot.utils.confighash import CELL_CONFIG_FIELDS, hashed_tree

    skip = CELL_CONFIG_FIELDS + FINGERPRINT_EXCLUDE_EXTRA
    # the trees the fingerprint hashes, so only keys that can change it are named
    old, new = (_flatten(hashed_tree(t, skip)) for t in (recorded, current))
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        flag = f" ({KEY_FLAGS[key]})" if key in KEY_FLAGS else ""
        out.append(f"{key}{flag} {_shown(old, key)} vs {_shown(new, key)}")
    return out


def _shown(values: dict[str, Any], key: str) -> str:
    """A value as typed: ``[32, 32]`` (a square size) as ``32``; a missing key as ``(absent)``."""
    if key not in values:
        return "(absent)"
    value = values[key]
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        return str(value[0])
    return str(value)
