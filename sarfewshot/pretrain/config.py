"""The pretraining configuration: a yacs tree with the release recipe as its defaults.

Merge order (:func:`setup_pretrain_cfg`): defaults -> YAML file (``--config``) -> command-line
flags (``--method``, ``--data``, ``--epochs`` ...) -> trailing ``KEY VALUE`` pairs -> checks ->
freeze. Unknown keys and type mismatches raise :class:`~sarfewshot.errors.ConfigError` naming the
key and the file or flag it came from (the merge helpers of ``sarfewshot.engine.config``).

Defaults (SAR-JEPA release, spec section 4): ViT-B/16 iRPE encoder, 8-block predictor of width 512
with 16 heads, 4 local windows of 7x7 patches with 80 % masked, AdamW (0.9, 0.95), weight decay
0.05 (none on biases and norms), ``lr = BASE_LR * total_batch / 256`` with ``BASE_LR = 1e-3``,
20 warm-up epochs then a per-step half-cosine to ``MIN_LR``, 300 epochs, 75 images per process.

Three numerical choices default to the toolkit's fast variant, not the release's:
``TRAIN.AMP bf16`` (the release trains in float32: ``none``), ``MODEL.INIT trunc_normal`` (the
release: ``xavier``) and ``MASK.WINDOW_DRAW uniform`` (the release: ``distinct``). The release
preset ``configs/pretrain/sarjepa_vit_b16.yaml`` sets the release's three;
``sarjepa_vit_b16_fast.yaml`` is the fast variant. The tiny presets keep the defaults, so their
runs (and the MSTAR study built on them) are unchanged.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from yacs.config import CfgNode

from sarfewshot.errors import ConfigError

# argparse attribute -> config key (applied when the flag is given)
FLAG_TO_KEY: dict[str, str] = {
    "method": "METHOD",
    "data": "DATA.ROOTS",
    "output": "OUTPUT_DIR",
    "epochs": "OPTIM.EPOCHS",
    "max_steps": "TRAIN.MAX_STEPS",
    "batch_size": "DATA.BATCH_SIZE",
    "img_size": "INPUT.SIZE",
    "seed": "SEED",
    "device": "DEVICE",
    "workers": "DATA.NUM_WORKERS",
    "exclude_split": "DATA.EXCLUDE_SPLITS",
    "exclude_root": "DATA.EXCLUDE_ROOT",
    "exclude_seeds": "DATA.EXCLUDE_SEEDS",
    "allow_data_change": "TRAIN.ALLOW_DATA_CHANGE",
}

# keys with a fixed set of values (the iRPE methods read both)
CHOICES: dict[str, tuple[str, ...]] = {
    "MODEL.INIT": ("xavier", "trunc_normal"),
    "MASK.WINDOW_DRAW": ("distinct", "uniform"),
}


def _model_node() -> CfgNode:
    m = CfgNode()
    m.PATCH_SIZE = 16
    m.EMBED_DIM = 768
    m.DEPTH = 12
    m.NUM_HEADS = 12
    m.MLP_RATIO = 4.0
    m.DROP_PATH = 0.0
    # iRPE methods: "xavier" = the release (Xavier-uniform Linears, default patch-conv bias);
    # "trunc_normal" = the toolkit's (trunc-normal 0.02 Linears, zero patch-conv bias)
    m.INIT = "trunc_normal"
    # predictor / decoder
    m.PRED_DIM = 512
    m.PRED_DEPTH = 8
    m.PRED_HEADS = 16
    return m


def _mask_node() -> CfgNode:
    m = CfgNode()
    m.TYPE = ""  # "" = the method's rule; "local" | "random" for the iRPE methods
    m.WINDOW = 7  # window side in patches (local windows)
    m.NUM_WINDOWS = 4
    # "distinct" = the release (row and column offsets drawn without replacement);
    # "uniform" = each window's offsets drawn independently (windows may coincide)
    m.WINDOW_DRAW = "uniform"
    m.RATIO = -1.0  # < 0 = the method's default (0.8 local windows, 0.75 random)
    m.NUM_TARGETS = 4  # I-JEPA target blocks
    m.TARGET_SCALE = (0.15, 0.2)
    m.TARGET_ASPECT = (0.75, 1.5)
    m.CONTEXT_SCALE = (0.85, 1.0)
    return m


def _target_node() -> CfgNode:
    t = CfgNode()
    t.RADII = (5, 9, 13, 17)  # GF radii
    t.NORM_PIX = False  # per-patch standardised pixels (pixel targets)
    t.LOWPASS_SIGMA = 2.0  # Gaussian low-pass, pixels
    t.HOG_BINS = 9
    t.HOG_CELL = 8
    t.SAR_HOG_RADII = (5,)
    return t


def _optim_node() -> CfgNode:
    o = CfgNode()
    o.BASE_LR = 1e-3
    o.LR = 0.0  # > 0 overrides BASE_LR * total_batch / 256
    o.MIN_LR = 0.0
    o.WEIGHT_DECAY = 0.05
    o.BETAS = (0.9, 0.95)
    o.WARMUP_EPOCHS = 20.0
    o.EPOCHS = 300
    o.ACCUM_ITER = 1
    o.CLIP_GRAD = 0.0  # > 0: clip the global gradient norm
    return o


def get_pretrain_cfg_default() -> CfgNode:
    """A fresh copy of the pretraining defaults (the release recipe)."""
    cfg = CfgNode()
    cfg.METHOD = "sarjepa"
    cfg.OUTPUT_DIR = "output/pretrain"
    cfg.SEED = 0
    cfg.DEVICE = "auto"  # auto | cpu | cuda | cuda:N
    cfg.DATA = CfgNode()
    cfg.DATA.ROOTS = ()
    cfg.DATA.BATCH_SIZE = 75  # per process
    cfg.DATA.NUM_WORKERS = 4
    cfg.DATA.FLOAT_PERCENTILE = 99.9  # scale of float images without a nominal maximum
    # held-out sets left out by content sha256 (split files or DATASET:val; see .exclude)
    cfg.DATA.EXCLUDE_SPLITS = ()
    cfg.DATA.EXCLUDE_ROOT = ""  # the dataset root the held-out paths are relative to
    cfg.DATA.EXCLUDE_SEEDS = ""  # seeds of the DATASET:val pools ("": 1-6, the eval defaults)
    # eval KEY VALUE pairs the DATASET:val pools are drawn under, e.g. DATASET.VAL_POOL 0.3
    cfg.DATA.EXCLUDE_EVAL_OPTS = ()
    cfg.INPUT = CfgNode()
    cfg.INPUT.SIZE = 224
    cfg.INPUT.CROP_SCALE = (0.2, 1.0)
    cfg.INPUT.CROP_RATIO = (0.75, 4.0 / 3.0)
    cfg.INPUT.HFLIP = 0.5
    cfg.INPUT.CONTRAST = 0.5
    cfg.MODEL = _model_node()
    cfg.MASK = _mask_node()
    cfg.TARGET = _target_node()
    cfg.IJEPA = CfgNode()
    cfg.IJEPA.EMA = (0.996, 1.0)  # target-encoder momentum, linear over the run
    cfg.OPTIM = _optim_node()
    cfg.TRAIN = CfgNode()
    cfg.TRAIN.MAX_STEPS = 0  # > 0: stop after this many optimizer steps (schedule unchanged)
    # bf16 | fp16 | none (float32, the release); autocast on CUDA only, the CPU runs float32
    cfg.TRAIN.AMP = "bf16"
    cfg.TRAIN.SAVE_EVERY = 20  # epochs between checkpoint-<epoch>.pth files
    cfg.TRAIN.LOG_EVERY = 10  # optimizer steps between log lines
    cfg.TRAIN.TENSORBOARD = True  # event files under OUTPUT_DIR/tensorboard (rank 0)
    cfg.TRAIN.COUNT_FLOPS = True  # FLOPs per image once per geometry: TFLOP/s and MFU
    cfg.TRAIN.RESUME = ""  # a checkpoint path, or "auto" for OUTPUT_DIR/checkpoint-last.pth
    # resume although the data's fingerprint differs from the checkpoint's (noted in the log)
    cfg.TRAIN.ALLOW_DATA_CHANGE = False
    return cfg


def _merge_flags(cfg: CfgNode, args: argparse.Namespace) -> None:
    from sarfewshot.engine.config import merge_opts

    for attr, key in FLAG_TO_KEY.items():
        value = getattr(args, attr, None)
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        flag = "--" + attr.replace("_", "-")
        if isinstance(value, (list, tuple)):
            value = tuple(str(v) for v in value)
        else:
            value = str(value)
        merge_opts(cfg, [key, value], source=f"command-line flag {flag}")


def check_pretrain_cfg(cfg: CfgNode) -> None:
    """Cross-key checks; raises ConfigError naming the key."""
    p = cfg.MODEL.PATCH_SIZE
    if cfg.INPUT.SIZE % p:
        raise ConfigError(f"INPUT.SIZE {cfg.INPUT.SIZE} must be a multiple of MODEL.PATCH_SIZE {p}")
    if cfg.MODEL.EMBED_DIM % cfg.MODEL.NUM_HEADS:
        raise ConfigError("MODEL.EMBED_DIM must be divisible by MODEL.NUM_HEADS")
    if cfg.MODEL.PRED_DIM % cfg.MODEL.PRED_HEADS:
        raise ConfigError("MODEL.PRED_DIM must be divisible by MODEL.PRED_HEADS")
    for key in ("DATA.BATCH_SIZE", "OPTIM.EPOCHS", "OPTIM.ACCUM_ITER", "TRAIN.LOG_EVERY"):
        section, name = key.split(".")
        if cfg[section][name] < 1:
            raise ConfigError(f"{key} must be >= 1; got {cfg[section][name]}")
    if cfg.TRAIN.AMP not in ("bf16", "fp16", "none"):
        raise ConfigError(f"TRAIN.AMP must be bf16, fp16 or none; got {cfg.TRAIN.AMP!r}")
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        if cfg[section][name] not in allowed:
            raise ConfigError(f"{key} must be {' or '.join(allowed)}; got {cfg[section][name]!r}")
    if cfg.TRAIN.MAX_STEPS < 0 or cfg.TRAIN.SAVE_EVERY < 0:
        raise ConfigError("TRAIN.MAX_STEPS and TRAIN.SAVE_EVERY must be >= 0")
    lo, hi = cfg.INPUT.CROP_SCALE
    if not 0.0 < lo <= hi <= 1.0:
        raise ConfigError(f"INPUT.CROP_SCALE must satisfy 0 < min <= max <= 1; got {(lo, hi)}")


def setup_pretrain_cfg(
    config_file: str | os.PathLike | None = None,
    args: argparse.Namespace | None = None,
    opts: Sequence[str] = (),
    overrides: dict | None = None,
) -> CfgNode:
    """Build the frozen pretraining config.

    Args:
        config_file: a YAML preset (e.g. ``configs/pretrain/sarjepa_tiny.yaml``).
        args: parsed CLI flags (see :data:`FLAG_TO_KEY`).
        opts: trailing ``KEY VALUE`` pairs.
        overrides: a nested mapping merged last (Python callers), e.g.
            ``{"TRAIN": {"MAX_STEPS": 20}}``.
    """
    from sarfewshot.engine.config import merge_dict, merge_file, merge_opts

    cfg = get_pretrain_cfg_default()
    if config_file:
        merge_file(cfg, config_file)
    if args is not None:
        _merge_flags(cfg, args)
    if opts:
        merge_opts(cfg, list(opts))
    if overrides:
        merge_dict(cfg, overrides, "pretrain() keyword overrides")
    check_pretrain_cfg(cfg)
    cfg.freeze()
    return cfg
