"""The yacs configuration: Dassl's keys and defaults, the SAR extensions, and the merge order.

Merge order (``setup_cfg``): defaults -> project extensions (``register_cfg_extension`` and the
``extend_cfg`` classmethods of registered trainers) -> dataset YAML -> method YAML ->
command-line flags -> trailing ``KEY VALUE`` pairs -> channel rule and checks -> freeze.

Differences from Dassl 0.6.3, all deliberate:

* ``--seed 0`` is a real seed (Dassl tested ``if args.seed:``).
* An unknown key or a type mismatch raises :class:`~sarfewshot.errors.ConfigError` naming the
  key and the file (or flag) it came from. An integer given for a float key is accepted
  (``WEIGHT_DECAY: 0``), which yacs refuses.
* ``INPUT.PIXEL_MEAN`` / ``INPUT.PIXEL_STD`` must hold one value per ``INPUT.CHANNELS``.
  When no YAML file or option sets them, they follow the channel count: 3 channels keep
  Dassl's ImageNet values, any other count ``C`` gets the channel average of those values
  (0.449 / 0.226) repeated ``C`` times, so a one-channel SAR config gets one value each.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Sequence

import yaml
from yacs.config import CfgNode

from sarfewshot.errors import ConfigError
from sarfewshot.utils.precision import PRECISIONS

INPUT_CALIBRATIONS = ("none", "median")  # MODEL.BACKBONE.INPUT_CALIBRATION

CfgExtension = Callable[[CfgNode], None]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: argparse attribute -> config key, applied only when the attribute is set (not None / "").
ARG_TO_KEY: dict[str, str] = {
    "root": "DATASET.ROOT",
    "output_dir": "OUTPUT_DIR",
    "resume": "RESUME",
    "seed": "SEED",
    "source_domains": "DATASET.SOURCE_DOMAINS",
    "target_domains": "DATASET.TARGET_DOMAINS",
    "transforms": "INPUT.TRANSFORMS",
    "trainer": "TRAINER.NAME",
    "backbone": "MODEL.BACKBONE.NAME",
    "head": "MODEL.HEAD.NAME",
    "arch": "MODEL.BACKBONE.ARCH",
    "init_weights": "MODEL.INIT_WEIGHTS",
}

_EXTENSIONS: list[CfgExtension] = []


# ----------------------------------------------------------------------------- defaults


def _input_defaults() -> CfgNode:
    node = CfgNode()
    node.SIZE = (224, 224)
    node.INTERPOLATION = "bilinear"
    node.TRANSFORMS = ()
    node.NO_TRANSFORM = False
    node.PIXEL_MEAN = list(IMAGENET_MEAN)
    node.PIXEL_STD = list(IMAGENET_STD)
    node.CROP_PADDING = 4
    node.RRCROP_SCALE = (0.08, 1.0)
    node.CUTOUT_N = 1
    node.CUTOUT_LEN = 16
    node.GN_MEAN = 0.0
    node.GN_STD = 0.15
    node.RANDAUGMENT_N = 2
    node.RANDAUGMENT_M = 10
    node.COLORJITTER_B = 0.4
    node.COLORJITTER_C = 0.4
    node.COLORJITTER_S = 0.4
    node.COLORJITTER_H = 0.1
    node.RGS_P = 0.2
    node.GB_P = 0.5
    node.GB_K = 21
    # SAR extensions (docs/architecture.md, "Config keys beyond Dassl's").
    node.CHANNELS = 1
    node.SAR = CfgNode()
    node.SAR.CROP = 128
    node.SAR.AMPLITUDE = "linear"
    node.SAR.DB_RANGE = (-30.0, 0.0)
    node.SAR.NORMALIZE = False
    return node


def _dataset_defaults() -> CfgNode:
    node = CfgNode()
    node.ROOT = ""
    node.NAME = ""
    node.SOURCE_DOMAINS = ()
    node.TARGET_DOMAINS = ()
    node.NUM_LABELED = -1
    node.NUM_SHOTS = -1
    node.VAL_PERCENT = 0.1
    node.STL10_FOLD = -1
    node.CIFAR_C_TYPE = ""
    node.CIFAR_C_LEVEL = 1
    node.ALL_AS_UNLABELED = False
    node.SUBSAMPLE_CLASSES = "all"  # CoOp's addition: all | base | new
    node.VAL_POOL = -1.0
    node.VAL_POOL_RULE = "random"  # random (per seed) | blocks (azimuth / file-order blocks)
    node.SPLIT_DIR = ""
    node.REPEAT = False
    node.ALLOW_SHORT_CLASSES = False  # K above a class's pool: refused unless set
    node.SAR = CfgNode()
    node.SAR.SAMPLE_MODE = "measured"
    node.SAR.SAMPLE_FORMAT = "decibel"
    node.SAR.EXTRA_CLASSES = False  # class folders outside a fixed class list: refused unless set
    node.SAR.ATRNET_SETTING = "soc40"  # ATRNet-STAR: the ATRBench setting (soc40, eoc_scene, ...)
    # ATRNet-STAR: evaluate with type folders missing (marked in the record and the table)
    node.SAR.ALLOW_MISSING_CLASSES = False
    node.SAR.ATRNET_TEST_SUBSET = ""  # ATRNet-STAR EOC: one test_<subset> folder instead of test
    return node


def _sampler_node(sampler: str, domain_keys: bool) -> CfgNode:
    node = CfgNode()
    node.SAMPLER = sampler
    node.BATCH_SIZE = 32
    if domain_keys:
        node.N_DOMAIN = 0
        node.N_INS = 16
    return node


def _dataloader_defaults() -> CfgNode:
    node = CfgNode()
    node.NUM_WORKERS = 4
    node.K_TRANSFORMS = 1
    node.RETURN_IMG0 = False
    node.TRAIN_X = _sampler_node("RandomSampler", domain_keys=True)
    node.TRAIN_U = _sampler_node("RandomSampler", domain_keys=True)
    node.TRAIN_U.SAME_AS_X = True
    node.TEST = _sampler_node("SequentialSampler", domain_keys=False)
    return node


def _model_defaults() -> CfgNode:
    node = CfgNode()
    node.INIT_WEIGHTS = ""
    node.BACKBONE = CfgNode()
    node.BACKBONE.NAME = "sarjepa"
    node.BACKBONE.PRETRAINED = True
    node.BACKBONE.ARCH = ""
    # SAR extension: per-chip input calibration inside the backbone wrapper (torchgeo dB
    # members: "median" puts each chip's median dB on the weights' mean). Opt-in; in the config
    # hash only when set, so calibrated cells never merge with the fixed mapping's.
    node.BACKBONE.INPUT_CALIBRATION = "none"
    # SAR extension: numeric precision of fine-tuning, testing and feature extraction. fp32 is
    # what the release ran; bf16 (autocast) is opt-in and, being in the config hash, never
    # merges with fp32 cells.
    node.PRECISION = "fp32"
    node.HEAD = CfgNode()
    node.HEAD.NAME = ""
    node.HEAD.HIDDEN_LAYERS = ()
    node.HEAD.ACTIVATION = "relu"
    node.HEAD.BN = True
    node.HEAD.DROPOUT = 0.0
    return node


def _optim_defaults() -> CfgNode:
    node = CfgNode()
    node.NAME = "adam"
    node.LR = 0.0003
    node.WEIGHT_DECAY = 5e-4
    node.MOMENTUM = 0.9
    node.SGD_DAMPNING = 0.0
    node.SGD_NESTEROV = False
    node.RMSPROP_ALPHA = 0.99
    node.ADAM_BETA1 = 0.9
    node.ADAM_BETA2 = 0.999
    node.STAGED_LR = False
    node.NEW_LAYERS = ()
    node.BASE_LR_MULT = 0.1
    node.LR_SCHEDULER = "single_step"
    node.STEPSIZE = (-1,)
    node.GAMMA = 0.1
    node.MAX_EPOCH = 10
    node.WARMUP_EPOCH = -1
    node.WARMUP_TYPE = "linear"
    node.WARMUP_CONS_LR = 1e-5
    node.WARMUP_MIN_LR = 1e-5
    node.WARMUP_RECOUNT = True
    return node


def _train_test_defaults(cfg: CfgNode) -> None:
    cfg.TRAIN = CfgNode()
    cfg.TRAIN.CHECKPOINT_FREQ = 0
    cfg.TRAIN.PRINT_FREQ = 10
    cfg.TRAIN.COUNT_ITER = "train_x"
    cfg.TEST = CfgNode()
    cfg.TEST.EVALUATOR = "Classification"
    cfg.TEST.PER_CLASS_RESULT = False
    cfg.TEST.COMPUTE_CMAT = False
    cfg.TEST.NO_TEST = False
    cfg.TEST.SPLIT = "test"
    cfg.TEST.FINAL_MODEL = "last_step"


def get_cfg_default() -> CfgNode:
    """A fresh, unfrozen config with Dassl 0.6.3's keys and defaults plus the SAR keys.

    ``MODEL.BACKBONE.NAME`` defaults to ``"sarjepa"`` (a sarfewshot backbone name) instead of
    Dassl's empty string; everything else keeps Dassl's value.
    """
    cfg = CfgNode()
    cfg.VERSION = 1
    cfg.OUTPUT_DIR = "./output"
    cfg.RESUME = ""
    cfg.SEED = -1
    cfg.USE_CUDA = True
    cfg.VERBOSE = True
    cfg.INPUT = _input_defaults()
    cfg.DATASET = _dataset_defaults()
    cfg.DATALOADER = _dataloader_defaults()
    cfg.MODEL = _model_defaults()
    cfg.OPTIM = _optim_defaults()
    _train_test_defaults(cfg)
    cfg.TRAINER = CfgNode()
    cfg.TRAINER.NAME = ""
    return cfg


# ----------------------------------------------------------------------------- extensions


def register_cfg_extension(fn: CfgExtension) -> CfgExtension:
    """Register ``fn(cfg)``, called by :func:`extend_cfg` to add keys (usable as a decorator)."""
    if fn not in _EXTENSIONS:
        _EXTENSIONS.append(fn)
    return fn


def _trainer_hooks() -> list[CfgExtension]:
    # Imported here: the registry imports the plug-in package, which imports this module.
    from sarfewshot.engine.registry import get_trainer, list_trainers

    hooks: list[CfgExtension] = []
    seen: set[Any] = set()
    for name in list_trainers():
        hook = getattr(get_trainer(name), "extend_cfg", None)
        if not callable(hook):
            continue
        # One call per underlying function: subclasses often inherit the same hook.
        key = getattr(hook, "__func__", hook)
        if key not in seen:
            seen.add(key)
            hooks.append(hook)
    return hooks


def extend_cfg(cfg: CfgNode) -> CfgNode:
    """Apply every registered extension, then each registered trainer's ``extend_cfg``."""
    for fn in list(_EXTENSIONS):
        fn(cfg)
    for hook in _trainer_hooks():
        hook(cfg)
    return cfg


# ----------------------------------------------------------------------------- merging


def _coerce(value: Any, current: Any, key: str, source: str) -> Any:
    """Return ``value`` converted to the type of ``current`` (yacs' rules, plus int -> float)."""
    if current is None:
        return value
    if type(value) is type(current):
        return value
    if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(current)(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(
        f"config key {key} in {source}: expected {type(current).__name__} "
        f"(like {current!r}), got {type(value).__name__} {value!r}"
    )


def _merge_value(cfg: CfgNode, name: str, value: Any, full: str, source: str) -> None:
    if name not in cfg:
        if not cfg.is_new_allowed():
            raise ConfigError(f"unknown config key {full} in {source}")
        cfg[name] = CfgNode(dict(value)) if isinstance(value, Mapping) else value
        return
    current = cfg[name]
    if isinstance(current, CfgNode):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {full} in {source} is a section; give it sub-keys")
        merge_dict(cfg[name], value, source, prefix=f"{full}.")
        return
    if isinstance(value, Mapping):
        raise ConfigError(f"config key {full} in {source} takes a value, not sub-keys")
    if isinstance(current, str) and isinstance(value, str):
        # A string key keeps its text: `DATASET.NAME 2017` must not turn into an int.
        decoded = CfgNode._decode_cfg_value(value)
        cfg[name] = decoded if isinstance(decoded, str) else value
        return
    cfg[name] = _coerce(CfgNode._decode_cfg_value(value), current, full, source)


def merge_dict(cfg: CfgNode, data: Mapping, source: str, prefix: str = "") -> None:
    """Merge a nested mapping into ``cfg``; unknown keys and bad types raise ``ConfigError``."""
    for name, value in data.items():
        _merge_value(cfg, str(name), value, f"{prefix}{name}", source)


def _read_yaml(path: str) -> Mapping:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, not {type(data).__name__}"
        )
    return data


def _flatten_keys(data: Mapping, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        full = f"{prefix}{name}"
        keys.add(full)
        if isinstance(value, Mapping):
            keys |= _flatten_keys(value, f"{full}.")
    return keys


def merge_file(cfg: CfgNode, path: str | os.PathLike) -> set[str]:
    """Merge a YAML file into ``cfg``; return the dotted keys it set."""
    data = _read_yaml(os.fspath(path))
    merge_dict(cfg, data, f"config file {os.fspath(path)}")
    return _flatten_keys(data)


def _set_dotted(cfg: CfgNode, key: str, value: Any, source: str) -> None:
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        if part not in node or not isinstance(node[part], CfgNode):
            raise ConfigError(f"unknown config key {key} in {source}")
        node = node[part]
    _merge_value(node, leaf, value, key, source)


def merge_opts(cfg: CfgNode, opts: Sequence[str], source: str = "command-line options") -> set[str]:
    """Merge trailing ``KEY VALUE`` pairs (values parsed as Python literals when possible)."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(
            f"{source}: KEY VALUE pairs expected, got an odd number of items ({opts[-1]!r} "
            "has no value)"
        )
    for key, value in zip(opts[0::2], opts[1::2]):
        _set_dotted(cfg, str(key), value, f"{source} ({key} {value})")
    return {str(k) for k in opts[0::2]}


def merge_args(cfg: CfgNode, args: argparse.Namespace) -> set[str]:
    """Copy CoOp ``train.py`` flags that are set into ``cfg`` (``--seed 0`` counts as set)."""
    done: set[str] = set()
    for attr, key in ARG_TO_KEY.items():
        value = getattr(args, attr, None)
        if value is None or (isinstance(value, (str, list, tuple)) and len(value) == 0):
            continue
        flag = "--" + attr.replace("_", "-")
        if isinstance(value, list):
            value = tuple(value)
        _set_dotted(cfg, key, value, f"command-line flag {flag}")
        done.add(key)
    return done


# ----------------------------------------------------------------------------- checks


def _channel_default(values: Sequence[float], channels: int) -> list[float]:
    if channels == len(values):
        return list(values)
    mean = round(sum(values) / len(values), 3)
    return [mean] * channels


def normalization_enabled(cfg: CfgNode) -> bool:
    """Whether ``INPUT.PIXEL_MEAN/STD`` are applied (``INPUT.SAR.NORMALIZE`` or Dassl's
    ``normalize`` transform)."""
    return bool(cfg.INPUT.SAR.NORMALIZE) or "normalize" in tuple(cfg.INPUT.TRANSFORMS)


def apply_channel_rule(cfg: CfgNode, explicit: Iterable[str] | None = None) -> None:
    """Fit ``INPUT.PIXEL_MEAN/STD`` to ``INPUT.CHANNELS`` and check their lengths.

    Values that no file or option set follow the channel count (see the module docstring).
    Set values must hold one number per channel when normalisation is on; when it is off they
    are never applied, so a mismatch (an RGB ``vit_b16.yaml`` copied from CoOp) only warns.

    Args:
        cfg: an unfrozen config.
        explicit: dotted keys that a file or option set. ``None`` means "unknown": a value
            equal to Dassl's RGB default is then treated as not set.

    Raises:
        ConfigError: ``INPUT.CHANNELS`` is not a positive integer, or a set value's length
            differs from it while normalisation is on.
    """
    channels = cfg.INPUT.CHANNELS
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ConfigError(f"INPUT.CHANNELS must be a positive integer, got {channels!r}")
    for name, default in (("PIXEL_MEAN", IMAGENET_MEAN), ("PIXEL_STD", IMAGENET_STD)):
        key = f"INPUT.{name}"
        value = list(cfg.INPUT[name])
        was_set = key in explicit if explicit is not None else value != list(default)
        if not was_set:
            cfg.INPUT[name] = _channel_default(default, channels)
        elif len(value) != channels:
            message = (
                f"{key} has {len(value)} value(s) {value} but INPUT.CHANNELS is {channels}; "
                "give one value per channel"
            )
            if normalization_enabled(cfg):
                raise ConfigError(message)
            warnings.warn(f"{message} (unused: normalisation is off)", stacklevel=2)


def check_cfg(cfg: CfgNode) -> None:
    """Value checks done at freeze time (choices that a typo would silently change)."""
    if cfg.TEST.FINAL_MODEL not in ("last_step", "best_val"):
        raise ConfigError(
            f"TEST.FINAL_MODEL must be last_step or best_val, got {cfg.TEST.FINAL_MODEL!r}"
        )
    if cfg.TEST.SPLIT not in ("test", "val"):
        raise ConfigError(f"TEST.SPLIT must be test or val, got {cfg.TEST.SPLIT!r}")
    if cfg.INPUT.SAR.AMPLITUDE not in ("linear", "db"):
        raise ConfigError(
            f"INPUT.SAR.AMPLITUDE must be linear or db, got {cfg.INPUT.SAR.AMPLITUDE!r}"
        )
    if cfg.MODEL.PRECISION not in PRECISIONS:
        raise ConfigError(f"MODEL.PRECISION must be fp32 or bf16, got {cfg.MODEL.PRECISION!r}")
    if cfg.MODEL.BACKBONE.INPUT_CALIBRATION not in INPUT_CALIBRATIONS:
        raise ConfigError(
            f"MODEL.BACKBONE.INPUT_CALIBRATION must be one of {INPUT_CALIBRATIONS}, "
            f"got {cfg.MODEL.BACKBONE.INPUT_CALIBRATION!r}"
        )


# ----------------------------------------------------------------------------- setup


def _resolve_inputs(
    dataset_config_file: str | None,
    config_file: str | None,
    opts: Sequence[str],
    args: argparse.Namespace | None,
) -> tuple[str | None, str | None, list[str]]:
    if args is None:
        return dataset_config_file, config_file, list(opts)
    dataset_config_file = dataset_config_file or getattr(args, "dataset_config_file", None)
    config_file = config_file or getattr(args, "config_file", None)
    merged = list(getattr(args, "opts", None) or []) + list(opts)
    return dataset_config_file, config_file, merged


def setup_cfg(
    dataset_config_file: str | os.PathLike | None = None,
    config_file: str | os.PathLike | None = None,
    opts: Sequence[str] = (),
    args: argparse.Namespace | None = None,
) -> CfgNode:
    """Build the frozen config in Dassl's merge order.

    Args:
        dataset_config_file: a dataset YAML (CoOp's ``--dataset-config-file``).
        config_file: a method/trainer YAML (CoOp's ``--config-file``).
        opts: trailing ``KEY VALUE`` pairs, merged last.
        args: an argparse Namespace with CoOp ``train.py`` flags (see :data:`ARG_TO_KEY`);
            its ``dataset_config_file``, ``config_file`` and ``opts`` are used too (explicit
            arguments win for the files; ``args.opts`` go before ``opts``).

    Raises:
        ConfigError: unknown key, type mismatch, unreadable file, bad channel count.
    """
    dataset_file, method_file, opts = _resolve_inputs(
        dataset_config_file and os.fspath(dataset_config_file),
        config_file and os.fspath(config_file),
        opts,
        args,
    )
    cfg = get_cfg_default()
    extend_cfg(cfg)
    explicit: set[str] = set()
    for path in (dataset_file, method_file):
        if path:
            explicit |= merge_file(cfg, path)
    if args is not None:
        explicit |= merge_args(cfg, args)
    explicit |= merge_opts(cfg, opts)
    apply_channel_rule(cfg, explicit)
    check_cfg(cfg)
    cfg.freeze()
    return cfg


# ----------------------------------------------------------------------------- records


def cfg_to_dict(cfg: CfgNode) -> dict[str, Any]:
    """A plain, JSON-serialisable copy of ``cfg`` (nested dicts; tuples become lists)."""

    def convert(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        return value

    return convert(cfg)
