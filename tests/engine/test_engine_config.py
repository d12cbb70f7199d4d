"""Config defaults, Dassl's merge order, CoOp-style YAML files, errors, channel rule, hashes."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import pytest

from sarfewshot.engine import config as config_mod
from sarfewshot.engine.config import (
    cfg_to_dict,
    extend_cfg,
    get_cfg_default,
    register_cfg_extension,
    setup_cfg,
)
from sarfewshot.errors import ConfigError
from sarfewshot.utils.confighash import config_fingerprint

# A dataset file and a trainer file written the way CoOp ships them (PyYAML reads "1e-5" as a
# string; yacs-style decoding must turn it into a float).
COOP_DATASET = """\
DATASET:
  NAME: "MSTAR_SOC"
"""
COOP_TRAINER = """\
DATALOADER:
  TRAIN_X:
    BATCH_SIZE: 50
  TEST:
    BATCH_SIZE: 100
  NUM_WORKERS: 8

INPUT:
  SIZE: (224, 224)
  INTERPOLATION: "bicubic"
  TRANSFORMS: ["center_crop"]

OPTIM:
  NAME: "adamw"
  LR: 0.001
  MAX_EPOCH: 40
  LR_SCHEDULER: "cosine"
  WARMUP_EPOCH: 2
  WARMUP_TYPE: "constant"
  WARMUP_CONS_LR: 1e-5
  WEIGHT_DECAY: 5e-4

TRAIN:
  PRINT_FREQ: 5

TEST:
  FINAL_MODEL: "last_step"
"""


@pytest.fixture(autouse=True)
def no_trainer_plugins(monkeypatch):
    """Keep these tests independent of the protocol plug-ins (tested in tests/trainers)."""
    monkeypatch.setattr("sarfewshot.engine.registry.list_trainers", lambda: [])


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_defaults_match_dassl_and_sar_extensions():
    cfg = get_cfg_default()
    assert (cfg.OUTPUT_DIR, cfg.RESUME, cfg.SEED, cfg.USE_CUDA, cfg.VERBOSE) == (
        "./output",
        "",
        -1,
        True,
        True,
    )
    assert cfg.INPUT.SIZE == (224, 224) and cfg.INPUT.INTERPOLATION == "bilinear"
    assert cfg.INPUT.RRCROP_SCALE == (0.08, 1.0) and cfg.INPUT.CROP_PADDING == 4
    assert (cfg.INPUT.CUTOUT_N, cfg.INPUT.CUTOUT_LEN, cfg.INPUT.GB_K) == (1, 16, 21)
    assert (cfg.INPUT.RANDAUGMENT_N, cfg.INPUT.RANDAUGMENT_M) == (2, 10)
    assert cfg.DATASET.NUM_SHOTS == -1 and cfg.DATASET.VAL_PERCENT == 0.1
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all"
    assert cfg.DATALOADER.NUM_WORKERS == 4
    assert cfg.DATALOADER.TRAIN_X.SAMPLER == "RandomSampler"
    assert cfg.DATALOADER.TRAIN_U.SAME_AS_X is True
    assert (cfg.DATALOADER.TEST.SAMPLER, cfg.DATALOADER.TEST.BATCH_SIZE) == (
        "SequentialSampler",
        32,
    )
    assert cfg.MODEL.HEAD.ACTIVATION == "relu" and cfg.MODEL.HEAD.BN is True
    o = cfg.OPTIM
    assert (o.NAME, o.LR, o.WEIGHT_DECAY, o.LR_SCHEDULER, o.STEPSIZE) == (
        "adam",
        3e-4,
        5e-4,
        "single_step",
        (-1,),
    )
    assert (o.WARMUP_EPOCH, o.WARMUP_TYPE, o.WARMUP_CONS_LR, o.WARMUP_RECOUNT) == (
        -1,
        "linear",
        1e-5,
        True,
    )
    assert (o.STAGED_LR, o.BASE_LR_MULT, o.SGD_NESTEROV, o.RMSPROP_ALPHA) == (
        False,
        0.1,
        False,
        0.99,
    )
    assert (cfg.TRAIN.CHECKPOINT_FREQ, cfg.TRAIN.PRINT_FREQ) == (0, 10)
    assert (cfg.TEST.EVALUATOR, cfg.TEST.SPLIT, cfg.TEST.FINAL_MODEL) == (
        "Classification",
        "test",
        "last_step",
    )
    # SAR extensions (docs/architecture.md).
    assert cfg.INPUT.CHANNELS == 1
    assert (cfg.INPUT.SAR.CROP, cfg.INPUT.SAR.AMPLITUDE, cfg.INPUT.SAR.NORMALIZE) == (
        128,
        "linear",
        False,
    )
    assert cfg.INPUT.SAR.DB_RANGE == (-30.0, 0.0)
    assert (cfg.DATASET.VAL_POOL, cfg.DATASET.SPLIT_DIR, cfg.DATASET.REPEAT) == (-1.0, "", False)
    assert (cfg.DATASET.SAR.SAMPLE_MODE, cfg.DATASET.SAR.SAMPLE_FORMAT) == (
        "measured",
        "decibel",
    )
    assert (cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.ARCH, cfg.MODEL.INIT_WEIGHTS) == (
        "sarjepa",
        "",
        "",
    )


def test_merge_order_files_args_opts(tmp_path):
    ds = _write(tmp_path, "ds.yaml", COOP_DATASET + "INPUT:\n  SIZE: (96, 96)\n")
    method = _write(tmp_path, "m.yaml", COOP_TRAINER)
    args = argparse.Namespace(
        root="/data",
        output_dir=str(tmp_path / "out"),
        seed=0,
        trainer="linear",
        backbone=None,
        resume="",
        dataset_config_file=ds,
        config_file=method,
        opts=["OPTIM.LR", "0.01"],
    )
    cfg = setup_cfg(opts=["OPTIM.MAX_EPOCH", "3"], args=args)
    assert cfg.is_frozen()
    assert cfg.DATASET.NAME == "MSTAR_SOC"
    assert cfg.INPUT.SIZE == (224, 224)  # method file wins over dataset file
    assert cfg.OPTIM.WARMUP_CONS_LR == 1e-5 and isinstance(cfg.OPTIM.WARMUP_CONS_LR, float)
    assert cfg.OPTIM.NAME == "adamw" and cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 50
    assert cfg.SEED == 0  # seed 0 is a real seed (Dassl dropped it)
    assert cfg.DATASET.ROOT == "/data" and cfg.TRAINER.NAME == "linear"
    assert cfg.MODEL.BACKBONE.NAME == "sarjepa"  # unset flag leaves the default
    assert cfg.OPTIM.LR == 0.01  # args.opts after the flags
    assert cfg.OPTIM.MAX_EPOCH == 3  # explicit opts last
    # Flags override files, options override flags.
    cfg2 = setup_cfg(
        dataset_config_file=ds,
        opts=["SEED", "7"],
        args=argparse.Namespace(seed=3, root=None),
    )
    assert cfg2.SEED == 7 and cfg2.INPUT.SIZE == (96, 96)


def test_unknown_key_names_key_and_file(tmp_path):
    bad = _write(tmp_path, "bad.yaml", "OPTIM:\n  LEARNING_RATE: 0.1\n")
    with pytest.raises(ConfigError) as info:
        setup_cfg(config_file=bad)
    assert "OPTIM.LEARNING_RATE" in str(info.value) and "bad.yaml" in str(info.value)
    with pytest.raises(ConfigError, match="TRAINER.NOPE"):
        setup_cfg(opts=["TRAINER.NOPE.X", "1"])
    with pytest.raises(ConfigError, match="odd number"):
        setup_cfg(opts=["OPTIM.LR"])


def test_type_errors_and_int_to_float(tmp_path):
    path = _write(tmp_path, "t.yaml", "OPTIM:\n  WEIGHT_DECAY: 0\n  MAX_EPOCH: 5\n")
    cfg = setup_cfg(config_file=path, opts=["DATASET.NAME", "2017"])
    assert cfg.OPTIM.WEIGHT_DECAY == 0.0 and isinstance(cfg.OPTIM.WEIGHT_DECAY, float)
    assert cfg.DATASET.NAME == "2017"
    bad = _write(tmp_path, "b.yaml", "OPTIM:\n  MAX_EPOCH: 2.5\n")
    with pytest.raises(ConfigError, match=r"OPTIM\.MAX_EPOCH.*b\.yaml"):
        setup_cfg(config_file=bad)
    with pytest.raises(ConfigError, match="not found"):
        setup_cfg(config_file=str(tmp_path / "missing.yaml"))


def test_pixel_mean_follows_channel_count(tmp_path):
    cfg = setup_cfg()
    assert list(cfg.INPUT.PIXEL_MEAN) == [0.449] and list(cfg.INPUT.PIXEL_STD) == [0.226]
    rgb = setup_cfg(opts=["INPUT.CHANNELS", "3"])
    assert list(rgb.INPUT.PIXEL_MEAN) == [0.485, 0.456, 0.406]
    one = setup_cfg(opts=["INPUT.PIXEL_MEAN", "[0.2]", "INPUT.PIXEL_STD", "[0.1]"])
    assert list(one.INPUT.PIXEL_MEAN) == [0.2]
    # Three values for one channel with normalisation on: an error naming the keys.
    path = _write(
        tmp_path,
        "rgb.yaml",
        "INPUT:\n  PIXEL_MEAN: [0.5, 0.5, 0.5]\n  SAR:\n    NORMALIZE: True\n",
    )
    with pytest.raises(ConfigError, match=r"INPUT\.PIXEL_MEAN.*INPUT\.CHANNELS is 1"):
        setup_cfg(config_file=path)
    # Normalisation off: the values are never applied, so CoOp's RGB files still merge.
    path = _write(tmp_path, "coop.yaml", "INPUT:\n  PIXEL_MEAN: [0.5, 0.5, 0.5]\n")
    with pytest.warns(UserWarning, match="PIXEL_MEAN"):
        setup_cfg(config_file=path)


def test_extensions_and_trainer_hooks(monkeypatch):
    calls = []

    def add_node(cfg):
        calls.append("ext")
        from yacs.config import CfgNode

        cfg.TRAINER.TESTEXT = CfgNode()
        cfg.TRAINER.TESTEXT.ALPHA = 0.5

    monkeypatch.setattr(config_mod, "_EXTENSIONS", [])
    assert register_cfg_extension(add_node) is add_node
    register_cfg_extension(add_node)  # registering twice applies once

    class WithHook:
        @classmethod
        def extend_cfg(cls, cfg):
            calls.append("hook")

    class Sub(WithHook):
        pass

    class Plain:
        pass

    table = {"a": WithHook, "b": Sub, "c": Plain}
    monkeypatch.setattr("sarfewshot.engine.registry.list_trainers", lambda: sorted(table))
    monkeypatch.setattr("sarfewshot.engine.registry.get_trainer", lambda n: table[n])
    cfg = setup_cfg(opts=["TRAINER.TESTEXT.ALPHA", "0.25"])
    assert cfg.TRAINER.TESTEXT.ALPHA == 0.25
    assert calls == ["ext", "hook"]  # the inherited hook runs once; Plain has none
    extend_cfg(get_cfg_default())
    assert calls.count("ext") == 2


def test_cfg_to_dict_and_hash(tmp_path):
    cfg = setup_cfg(opts=["SEED", "1", "OUTPUT_DIR", str(tmp_path)])
    data = cfg_to_dict(cfg)
    assert data["INPUT"]["SIZE"] == [224, 224]
    json.dumps(data)  # plain JSON
    same = setup_cfg(opts=["SEED", "2", "OUTPUT_DIR", str(tmp_path / "x")])
    other = setup_cfg(opts=["SEED", "1", "OPTIM.LR", "0.5"])
    assert config_fingerprint(cfg) == config_fingerprint(same)
    assert config_fingerprint(cfg) != config_fingerprint(other)
    assert config_fingerprint(cfg, exclude=()) != config_fingerprint(same, exclude=())
