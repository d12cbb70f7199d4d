"""From a config to a Dassl DatasetBase: listing, saved split, absolute paths."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
from yacs.config import CfgNode

from sarfewshot.data.build import build_dataset, build_listing, build_split
from sarfewshot.data.splits import split_path
from sarfewshot.data.transforms import PreprocessSpec, spec_from_cfg
from sarfewshot.errors import ConfigError, DatasetError, SplitError
from tests import fakes


def _cfg(root, split_dir, shots=2, seed=0, name="folder") -> CfgNode:
    return CfgNode(
        {
            "SEED": seed,
            "OUTPUT_DIR": str(split_dir.parent),
            "DATASET": CfgNode(
                {
                    "NAME": name,
                    "ROOT": str(root),
                    "NUM_SHOTS": shots,
                    "SPLIT_DIR": str(split_dir),
                    "VAL_POOL": -1.0,
                    "REPEAT": False,
                }
            ),
        }
    )


def test_build_dataset_from_config(tmp_path):
    fakes.make_folder_tree(tmp_path / "data", split=True, n_train=5, n_test=2)
    split_dir = tmp_path / "out" / "splits"
    ds = build_dataset(_cfg(tmp_path / "data", split_dir))
    assert ds.num_classes == 3 and ds.classnames == ["cat_a", "cat_b", "cat_c"]
    assert Counter(d.label for d in ds.train_x) == {0: 2, 1: 2, 2: 2}
    assert len(ds.test) == 6 and len(ds.val) == 3  # 20 % of 5 held out per class
    for d in ds.train_x + ds.val + ds.test:
        assert os.path.isabs(d.impath) and os.path.isfile(d.impath)
    assert split_path(split_dir, "folder-data", 2, 0).is_file()
    whole = build_dataset(_cfg(tmp_path / "data", split_dir, shots=-1))
    assert len(whole.train_x) == 12  # the whole pool: 4 per class after the validation pool
    assert split_path(split_dir, "folder-data", -1, 0).is_file()

    # the folder changes after the split was drawn: the saved split is refused
    fakes.write_image(
        tmp_path / "data" / "train" / "cat_a" / "new.png", fakes.chip(np.random.default_rng(0))
    )
    with pytest.raises(SplitError, match="changed since the split was drawn"):
        build_dataset(_cfg(tmp_path / "data", split_dir))


def test_build_errors(tmp_path):
    with pytest.raises(ConfigError, match="DATASET.NAME"):
        build_dataset(_cfg(tmp_path, tmp_path / "s", name=""))
    with pytest.raises(DatasetError, match="missing_root.*expected layout"):
        build_listing("mstar", tmp_path / "missing_root")
    with pytest.raises(DatasetError, match="missing_root.*expected layout: MSTAR_SOC"):
        build_dataset(_cfg(tmp_path / "missing_root", tmp_path / "s", name="mstar"))


def test_sample_options_come_from_config(tmp_path):
    fakes.make_sample_tree(tmp_path / "sample", per_elevation=3)
    cfg = _cfg(tmp_path / "sample", tmp_path / "s", shots=1, name="sample")
    cfg.DATASET.SAR = CfgNode({"SAMPLE_MODE": "synth2real", "SAMPLE_FORMAT": "qpm"})
    dataset, listing, split = build_split(cfg)
    assert dataset.mode == "synth2real" and dataset.format == "qpm"
    assert split.dataset == "sample_synth2real_qpm"
    assert all("/synth/" in d.impath or d.impath.startswith("synth/") for d in split.train)


def test_unseeded_config_draws_with_seed_zero(tmp_path):
    fakes.make_folder_tree(tmp_path / "data", split=True)
    with pytest.warns(UserWarning, match="seed 0"):
        a = build_dataset(_cfg(tmp_path / "data", tmp_path / "s", seed=-1))
    b = build_dataset(_cfg(tmp_path / "data", tmp_path / "s", seed=0))
    assert a.train_x == b.train_x


def test_dataset_config_files_give_release_preset():
    config = pytest.importorskip("sarfewshot.engine.config")
    from sarfewshot.configs import CONFIG_DIR
    from sarfewshot.data.registry import DATASET_REGISTRY

    for name in ("sample", "synthetic"):
        cfg = config.get_cfg_default()
        config.merge_file(cfg, CONFIG_DIR / "datasets" / f"{name}.yaml")
        assert name == cfg.DATASET.NAME
        assert spec_from_cfg(cfg) == PreprocessSpec()  # crop 128, bicubic 224, [0, 1]
    # The release's files set only the name; with the release's trainer file the preset is whole.
    trainer = CONFIG_DIR / "trainers" / "MIM_linear" / "vit_b16.yaml"
    for name, canonical in (
        ("MSTAR_SOC", "mstar_soc"),
        ("New_FUSAR", "fusar_ship"),
        ("SAR_ACD", "sar_acd"),
    ):
        cfg = config.get_cfg_default()
        config.merge_file(cfg, CONFIG_DIR / "datasets" / f"{name}.yaml")
        config.merge_file(cfg, trainer)
        assert DATASET_REGISTRY.canonical(cfg.DATASET.NAME) == canonical
        assert spec_from_cfg(cfg) == PreprocessSpec()
