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

    ``DATASET.VAL_POOL_RULE`` at its default (``random``) is left out too, so records computed
    before the key existed keep their fingerprint; ``blocks`` changes it (and the split files).
    """
    from sarfewshot.utils.confighash import CELL_CONFIG_FIELDS, config_fingerprint

    extra = FINGERPRINT_EXCLUDE_EXTRA
    if str(cfg.DATASET.get("VAL_POOL_RULE", "random")) == "random":
        extra += ("DATASET.VAL_POOL_RULE",)
    return config_fingerprint(cfg_dict(cfg), exclude=CELL_CONFIG_FIELDS + extra)
