"""finetune and linear (TrainerX protocols) on a tiny iRPE ViT and random 32 px images."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sarfewshot.configs import config_path
from sarfewshot.engine import config as C
from sarfewshot.engine.protocol import CellContext, CellData, NonFiniteLossError
from sarfewshot.engine.registry import get_trainer
from sarfewshot.models.factory import build_backbone
from sarfewshot.models.features import extract_features

ARCH = "irpe_vit_micro_patch8"


def _cfg(protocol: str, seed: int = 1, epochs: int = 4, opts: tuple = ()):
    cfg = C.get_cfg_default()
    C.extend_cfg(cfg)
    C.merge_file(cfg, config_path(*get_trainer(protocol).preset))
    C.merge_opts(cfg, ["INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", str(epochs), *opts])
    cfg.SEED = seed
    cfg.TRAINER.NAME = protocol
    cfg.freeze()
    return cfg


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("random", arch=ARCH, img_size=32, seed=0).eval()


def _images(seed: int, per_class: int, classes: int = 3) -> tuple[torch.Tensor, np.ndarray]:
    # Class c is a square of class-specific size at a random place, on noise: learnable by a
    # backbone without absolute positions, not trivial.
    g = torch.Generator().manual_seed(seed)
    labels = np.repeat(np.arange(classes), per_class)
    imgs = torch.randint(0, 40, (len(labels), 1, 32, 32), generator=g, dtype=torch.uint8)
    for i, c in enumerate(labels):
        side = 4 + 10 * int(c)
        r, q = torch.randint(0, 33 - side, (2,), generator=g).tolist()
        imgs[i, 0, r : r + side, q : q + side] += 160
    return imgs, labels


def _data(backbone, seed: int = 1, features: bool = True) -> CellData:
    train, ty = _images(10 + seed, 20)
    test, qy = _images(99, 10)
    data = CellData(
        classnames=["a", "b", "c"],
        shots=20,
        seed=seed,
        train_labels=ty,
        test_labels=qy,
        train_images=train,
        test_images=test,
        dataset="toy",
    )
    if features:
        data.train_features = extract_features(
            backbone, train, batch_size=64, progress=False
        ).numpy()
        data.test_features = extract_features(backbone, test, batch_size=64, progress=False).numpy()
    return data


def _ctx(backbone) -> CellContext:
    return CellContext(device="cpu", backbone_factory=lambda: copy.deepcopy(backbone))


def test_linear_cached_and_uncached_agree(backbone):
    cls = get_trainer("linear")
    opts = ("DATALOADER.TRAIN_X.BATCH_SIZE", "10")
    cached = cls.run_cell(_cfg("linear", epochs=15, opts=opts), _data(backbone), _ctx(backbone))
    cached = cached.metrics
    cfg = _cfg("linear", epochs=15, opts=(*opts, "TRAINER.LINEAR.FEATURE_CACHE", "False"))
    assert "images" in cls.requirements(cfg)
    uncached = cls.run_cell(cfg, _data(backbone, features=False), _ctx(backbone)).metrics
    assert cached["accuracy"] == uncached["accuracy"]
    assert cached["confusion_matrix"] == uncached["confusion_matrix"]
    assert cached["final_train_loss"] == pytest.approx(uncached["final_train_loss"], rel=1e-5)
    assert cached["accuracy"] > 60.0  # it learns the corner squares


@pytest.mark.parametrize("protocol", ["linear", "finetune"])
def test_same_seed_same_numbers(backbone, protocol):
    cls = get_trainer(protocol)
    first = cls.run_cell(_cfg(protocol, epochs=3), _data(backbone), _ctx(backbone)).metrics
    again = cls.run_cell(_cfg(protocol, epochs=3), _data(backbone), _ctx(backbone)).metrics
    other = cls.run_cell(_cfg(protocol, seed=2, epochs=3), _data(backbone), _ctx(backbone)).metrics
    assert first == again
    assert first["final_train_loss"] != other["final_train_loss"]  # the seed matters


def _trainer(protocol: str, backbone, data: CellData, **extra):
    cls = get_trainer(protocol)
    cfg = _cfg(protocol, opts=("TRAINER.LINEAR.FEATURE_CACHE", "False"))
    options = cls.trainer_options(cfg, data, _ctx(backbone))
    dm = cls.datamanager(cfg, data)
    return cls(
        cfg,
        dm,
        device="cpu",
        save_checkpoints=False,
        write_log=False,
        verbose=False,
        show_progress=False,
        **options,
        **extra,
    )


def test_finetune_trains_every_weight_with_release_head_and_schedule(backbone):
    trainer = _trainer("finetune", backbone, _data(backbone, features=False))
    head = trainer.model.head
    assert head.weight.std().item() == pytest.approx(2e-5, rel=0.3)
    assert head.bias.abs().max().item() == 0.0
    assert all(p.requires_grad for p in trainer.model.parameters())
    before = copy.deepcopy(trainer.model.backbone.state_dict())
    trainer.train()
    lrs = [h["lr"] for h in trainer.history]
    assert lrs[:2] == pytest.approx([1e-5, 1e-5])  # two constant warm-up epochs
    assert lrs[2] == pytest.approx(1e-3)  # then cosine restarts from the base rate
    changed = [
        k for k, v in trainer.model.backbone.state_dict().items() if not torch.equal(v, before[k])
    ]
    assert changed


def test_linear_freezes_the_backbone_in_eval_mode(backbone):
    trainer = _trainer("linear", backbone, _data(backbone, features=False))
    bn, linear = trainer.model.head
    assert not bn.affine and bn.eps == 1e-6
    assert linear.weight.std().item() == pytest.approx(0.01, rel=0.3)
    before = copy.deepcopy(trainer.model.backbone.state_dict())
    trainer.set_model_mode("train")
    assert bn.training and not trainer.model.backbone.training
    trainer.train()
    after = trainer.model.backbone.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_non_finite_loss_stops_the_cell(backbone, monkeypatch):
    cls = get_trainer("linear")
    data = _data(backbone)
    data.train_features = data.train_features.copy()
    data.train_features[0, 0] = np.inf
    with pytest.raises(NonFiniteLossError):
        cls.run_cell(_cfg("linear"), data, _ctx(backbone))
