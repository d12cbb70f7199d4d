"""The Dassl bridge: without Dassl (clear error, config and image helpers) and with a real Dassl.

Tests that use the ``real_dassl`` fixture skip, with a message, when Dassl cannot be imported;
run them with a Dassl 0.6.3 checkout installed (docs/dassl.md).
"""

from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import pytest
import torch
from yacs.config import CfgNode

from sarfewshot.configs import config_path
from sarfewshot.engine.config import get_cfg_default
from sarfewshot.errors import ConfigError, SarFewShotError
from sarfewshot.integrations import dassl as bridge
from tests.fakes import chip, make_mstar_soc_tree, write_image

TINY = [
    "MODEL.BACKBONE.NAME",
    "random",
    "MODEL.BACKBONE.ARCH",
    "irpe_vit_micro_patch8",
    "INPUT.SIZE",
    "(32, 32)",
    "DATASET.NUM_SHOTS",
    "1",
    "OPTIM.MAX_EPOCH",
    "3",
    "USE_CUDA",
    "False",
]
#: sarfewshot's keys that Dassl's defaults lack.
SAR_KEYS = (
    "INPUT.CHANNELS",
    "INPUT.SAR",
    "DATASET.VAL_POOL",
    "DATASET.SPLIT_DIR",
    "DATASET.REPEAT",
    "DATASET.SAR",
    "MODEL.BACKBONE.ARCH",
)


def dassl_like_cfg() -> CfgNode:
    """A config with Dassl's keys and defaults only (ours minus the SAR additions)."""
    cfg = get_cfg_default()
    for key in SAR_KEYS:
        parent, leaf = key.rsplit(".", 1)
        node = cfg
        for part in parent.split("."):
            node = node[part]
        del node[leaf]
    cfg.MODEL.BACKBONE.NAME = ""
    return cfg


# ----------------------------------------------------------------------------- without Dassl


def test_import_without_dassl_works_and_register_explains(monkeypatch):
    for name in [n for n in sys.modules if n == "dassl" or n.startswith("dassl.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "dassl", None)  # `import dassl` now fails
    spec = importlib.util.spec_from_file_location("_bridge_copy", bridge.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # importing the bridge needs no Dassl
    assert not module.dassl_available()
    with pytest.raises(SarFewShotError) as err:
        module.register()
    assert isinstance(err.value, ImportError)
    message = str(err.value)
    assert "Dassl is not installed" in message and bridge.DASSL_REPO in message
    assert "pip install" in message and "dassl-train" in message


def test_extend_cfg_adds_our_keys_and_keeps_values():
    cfg = dassl_like_cfg()
    cfg.OPTIM.LR = 0.5
    assert bridge.extend_cfg(cfg) is cfg
    assert cfg.INPUT.CHANNELS == 1 and cfg.INPUT.SAR.CROP == 128 and cfg.DATASET.VAL_POOL == -1.0
    assert cfg.TRAINER.FINETUNE.HEAD_INIT_STD == 2e-5 and cfg.TRAINER.LINEAR.BN_EPS == 1e-6
    assert cfg.MODEL.BACKBONE.NAME == "sarjepa" and cfg.OPTIM.LR == 0.5
    # Dassl merges YAML files with yacs itself: the release's files must pass that merge.
    cfg.merge_from_file(str(config_path("datasets", "New_FUSAR.yaml")))
    cfg.merge_from_file(str(config_path("trainers", "MIM_linear", "vit_b16.yaml")))
    cfg.merge_from_list(["INPUT.SAR.CROP", "96", "TRAINER.LINEAR.HEAD_INIT_STD", "0.02"])
    assert (cfg.DATASET.NAME, cfg.OPTIM.LR, cfg.OPTIM.WEIGHT_DECAY) == ("New_FUSAR", 1e-3, 5e-4)
    assert tuple(cfg.INPUT.SIZE) == (224, 224) and cfg.OPTIM.WARMUP_CONS_LR == 1e-5
    assert (cfg.INPUT.SAR.CROP, cfg.TRAINER.LINEAR.HEAD_INIT_STD) == (96, 0.02)
    cfg.freeze()
    with pytest.raises(ConfigError, match="unfrozen"):
        bridge.extend_cfg(cfg)


def test_with_sar_keys_fills_a_plain_dassl_cfg():
    plain = dassl_like_cfg()
    plain.freeze()
    filled = bridge.with_sar_keys(plain)
    assert filled is not plain and filled.is_frozen() and filled.INPUT.SAR.CROP == 128
    assert "SAR" not in plain.INPUT  # the caller's config is left alone
    assert bridge.with_sar_keys(filled) is filled


def test_sar_dataset_wrapper_gives_one_channel_images(tmp_path):
    from sarfewshot.data.base import Datum

    rng = np.random.default_rng(0)
    paths = [write_image(tmp_path / f"c{i}.png", chip(rng, 40, 44)) for i in range(3)]
    items = [Datum(str(p), label=i, classname=f"k{i}") for i, p in enumerate(paths)]
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (32, 32)
    rgb_transform = lambda img: torch.zeros(3, 224, 224)  # noqa: E731 (what Dassl would pass)
    wrapper = bridge.SARDatasetWrapper(cfg, items, transform=rgb_transform, is_train=True)
    batch = wrapper[1]
    assert batch["img"].shape == (1, 32, 32) and batch["label"] == 1 and batch["index"] == 1
    assert torch.equal(batch["img"], bridge.sar_transform(cfg)(str(paths[1])))
    assert float(batch["img"].min()) >= 0.0 and float(batch["img"].max()) <= 1.0


def test_dassl_names_cover_the_release():
    datasets = bridge.dassl_dataset_names()
    assert {k: datasets[k] for k in bridge.RELEASE_DATASETS} == bridge.RELEASE_DATASETS
    assert datasets["mstar_soc"] == "mstar_soc" and "synthetic" in datasets
    trainers = bridge.dassl_trainer_names()
    assert {k: trainers[k] for k in bridge.RELEASE_TRAINERS} == bridge.RELEASE_TRAINERS
    assert set(trainers.values()) == {"finetune", "linear", "lora", "partial"}


# ----------------------------------------------------------------------------- real Dassl


@pytest.fixture(scope="module")
def real_dassl():
    """Dassl's package with the bridge registered (skips when Dassl cannot be imported)."""
    try:
        module = bridge.require_dassl()
    except bridge.DasslNotInstalledError as exc:
        pytest.skip(f"real-Dassl check skipped: {exc}")
    bridge.register()
    return module


@pytest.fixture
def fake_root(tmp_path):
    make_mstar_soc_tree(tmp_path / "data", n_train=5, n_test=2)
    return tmp_path / "data"


def dassl_cfg(root, out, trainer="MIM_finetune", opts=()):
    """A Dassl config the CoOp way: Dassl defaults, extend_cfg, release files, options."""
    from dassl.config import get_cfg_default as dassl_default

    cfg = bridge.extend_cfg(dassl_default())
    cfg.merge_from_file(str(config_path("datasets", "MSTAR_SOC.yaml")))
    cfg.merge_from_file(str(config_path("trainers", trainer, "vit_b16.yaml")))
    base = ["DATASET.ROOT", str(root), "OUTPUT_DIR", str(out), "TRAINER.NAME", trainer]
    cfg.merge_from_list(base + TINY + list(opts))
    cfg.freeze()
    return cfg


def test_register_fills_the_real_registries(real_dassl):
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
    from dassl.engine import TRAINER_REGISTRY, TrainerX

    sizes = len(DATASET_REGISTRY.registered_names()), len(TRAINER_REGISTRY.registered_names())
    names = bridge.register()  # a second call: nothing changes
    assert sizes == (
        len(DATASET_REGISTRY.registered_names()),
        len(TRAINER_REGISTRY.registered_names()),
    )
    for name in ("MSTAR_SOC", "New_FUSAR", "SAR_ACD", "mstar_soc", "sar_acd", "synthetic"):
        assert name in names["datasets"] and issubclass(DATASET_REGISTRY.get(name), DatasetBase)
    for name in ("MIM_finetune", "MIM_linear", "finetune", "linear"):
        assert name in names["trainers"] and issubclass(TRAINER_REGISTRY.get(name), TrainerX)
    assert DATASET_REGISTRY.get("New_FUSAR").sar_name == "fusar_ship"
    assert TRAINER_REGISTRY.get("MIM_linear").protocol == "linear"


def test_register_leaves_foreign_classes_alone(real_dassl):
    from dassl.utils import Registry

    registry = Registry("DATASET")

    class MSTAR_SOC:  # noqa: N801 (someone's own Dassl dataset)
        pass

    registry.register(MSTAR_SOC)
    names = {"mstar_soc": "mstar_soc", "MSTAR_SOC": "mstar_soc"}
    with pytest.raises(ConfigError, match="MSTAR_SOC"):
        bridge._register_into(registry, names, bridge._dataset_base(), "sar_name", "dataset")
    assert registry.registered_names() == ["MSTAR_SOC"] and registry.get("MSTAR_SOC") is MSTAR_SOC


def test_dassl_builds_our_dataset_with_our_split(real_dassl, fake_root, tmp_path):
    import json
    import os

    from dassl.data.datasets import build_dataset

    cfg = dassl_cfg(fake_root, tmp_path / "out", opts=["SEED", "4"])
    dataset = build_dataset(cfg)
    assert type(dataset).__name__ == "MSTAR_SOC" and dataset.num_classes == 10
    assert len(dataset.train_x) == 10 and len(dataset.val) == 10 and len(dataset.test) == 20
    (split_file,) = (tmp_path / "out" / "splits").rglob("*.json")
    drawn = json.loads(split_file.read_text())["train"]
    base = os.path.abspath(fake_root / "MSTAR_SOC")  # the listing root the split is relative to
    assert sorted(os.path.relpath(d.impath, base) for d in dataset.train_x) == sorted(
        p for p, _, _ in drawn
    )
    dm = bridge.build_data_manager(cfg)  # Dassl's DataManager, our images
    batch = next(iter(dm.train_loader_x))
    assert batch["img"].shape == (10, 1, 32, 32) and batch["img"].dtype == torch.float32


@pytest.mark.parametrize("trainer", ["MIM_finetune", "MIM_linear"])
def test_dassl_build_trainer_trains_with_warmup(real_dassl, fake_root, tmp_path, capsys, trainer):
    from dassl.engine import build_trainer

    out = tmp_path / "out"
    dassl_trainer = build_trainer(dassl_cfg(fake_root, out, trainer, ["SEED", "1"]))
    dassl_trainer.train()  # Dassl 0.6.3's own warm-up scheduler raises TypeError here
    text = capsys.readouterr().out
    lrs = re.findall(r"^epoch \[\d/3\] batch .* lr (\S+) eta", text, flags=re.M)
    assert [float(x) for x in lrs] == [1e-5, 1e-5, 1e-3]  # 2 constant warm-up epochs, cosine
    assert re.search(r"Finish training\n(.*\n)*=> result\n\* total: 20\n", text)
    ckpt = torch.load(out / "model" / "model.pth.tar-3", weights_only=True)
    assert ckpt["scheduler"] == {
        "last_epoch": 3,
        "base_lrs": [1e-3] * len(ckpt["scheduler"]["base_lrs"]),
    }


def test_dassl_best_val_resume_and_epoch_reload(real_dassl, fake_root, tmp_path, capsys):
    from dassl.engine import build_trainer

    out = tmp_path / "out"
    cfg = dassl_cfg(fake_root, out, opts=["SEED", "2", "TEST.FINAL_MODEL", "best_val"])
    build_trainer(cfg).train()  # best_val reloads model-best (weights_only) after training
    assert (out / "model" / "model-best.pth.tar").is_file()
    assert "Deploy the model with the best val performance" in capsys.readouterr().out
    again = build_trainer(cfg)
    again.train()  # resumes at epoch 3 of 3: no epoch runs, the best model is tested
    text = capsys.readouterr().out
    assert "Resume" in text and "(epoch=3)" in text and "epoch [" not in text
    again.load_model(str(out), epoch=3)  # a non-best checkpoint: val_result None
    assert "val_result=None" in capsys.readouterr().out


def test_dassl_seed_zero_is_reproducible(real_dassl, fake_root, tmp_path):
    from dassl.engine import build_trainer

    runs = []
    for name in ("a", "b"):
        cfg = dassl_cfg(fake_root, tmp_path / name, opts=["SEED", "0"])
        torch.manual_seed(12345)
        trainer = build_trainer(cfg)
        assert torch.initial_seed() == 0  # Dassl's `if args.seed:` would leave it unseeded
        trainer.train()
        runs.append((trainer.test(), trainer.model.state_dict()))
    (acc_a, state_a), (acc_b, state_b) = runs
    assert acc_a == acc_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_dassl_dataset_of_the_user_gets_one_channel_images(real_dassl, tmp_path, capsys):
    from dassl.config import get_cfg_default as dassl_default
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
    from dassl.engine import build_trainer

    rng = np.random.default_rng(1)
    items = [
        Datum(str(write_image(tmp_path / "img" / f"{c}_{i}.png", chip(rng, 30, 30))), c, 0, f"k{c}")
        for c in range(3)
        for i in range(3)
    ]

    class SarFewShotToy(DatasetBase):  # a user's own Dassl dataset, not a sarfewshot one
        def __init__(self, cfg):
            super().__init__(train_x=items[::2], val=None, test=items)

    DATASET_REGISTRY.register(SarFewShotToy, force=True)
    opts = ["DATASET.NAME", "SarFewShotToy", "TRAINER.NAME", "MIM_linear", "SEED", "3"]
    opts += TINY + ["DATALOADER.NUM_WORKERS", "0"]
    cfg = bridge.extend_cfg(dassl_default())
    cfg.merge_from_list(opts + ["OUTPUT_DIR", str(tmp_path / "out")])
    cfg.freeze()
    trainer = build_trainer(cfg)  # Dassl's DataManager with SARDatasetWrapper
    assert next(iter(trainer.train_loader_x))["img"].shape[1:] == (1, 32, 32)
    trainer.train()
    assert "* total: 9" in capsys.readouterr().out
