"""Every pretraining method: registry, a CPU smoke run whose loss decreases, state-dict layouts."""

from __future__ import annotations

import argparse

import pytest
import torch

from sarfewshot.configs import config_path
from sarfewshot.errors import ConfigError, UnknownNameError
from sarfewshot.pretrain.config import setup_pretrain_cfg
from sarfewshot.pretrain.methods import build_pretrain_model, get_method, list_methods
from sarfewshot.pretrain.model import LocalMaskedModel
from sarfewshot.utils.seeding import torch_generator
from tests.pretrain.synthetic_sar import sar_batch

METHODS = [
    "hog",
    "ijepa",
    "lomar",
    "lomar_sar",
    "lowpass",
    "mae",
    "sar_hog",
    "sarjepa",
    "sarjepa_gauss",
]


def tiny_cfg(method: str, **overrides):
    return setup_pretrain_cfg(config_path("pretrain", f"{method}_tiny.yaml"), overrides=overrides)


def test_registry_lists_every_method():
    import sarfewshot.pretrain as package

    assert list_methods() == METHODS == package.list_methods()
    assert get_method("SAR-JEPA") is get_method("sarjepa")
    with pytest.raises(UnknownNameError, match="sarjepa"):
        get_method("simclr")


@pytest.mark.parametrize("method", METHODS)
def test_cpu_smoke_loss_decreases(method):
    cfg = tiny_cfg(method)
    model = build_pretrain_model(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    x = sar_batch(4, cfg.INPUT.SIZE, seed=0)
    losses = []
    for step in range(12):
        # a fixed batch and fixed masks: the decrease measures learning, not sampling luck
        out = model(x, torch_generator(0, "smoke"))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        if hasattr(model, "after_step"):
            model.after_step(step / 12)
        losses.append(out["loss"].item())
        assert torch.isfinite(out["target_var"])
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.9 * first, losses


def test_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = build_pretrain_model(tiny_cfg("sarjepa")).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    b = build_pretrain_model(tiny_cfg("sarjepa")).state_dict()
    c = build_pretrain_model(tiny_cfg("sarjepa", SEED=1)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["blocks.0.attn.qkv.weight"], c["blocks.0.attn.qkv.weight"])


def test_sarjepa_state_dict_matches_the_release_checkpoint(vectors_dir):
    """The release's tiny pretraining file loads into our model with only its unused keys left."""
    path = vectors_dir / "irpe_vit_tiny_pretrain_ckpt.pth"
    with torch.serialization.safe_globals([argparse.Namespace]):
        release = torch.load(path, map_location="cpu", weights_only=True)["model"]
    release = {k.removeprefix("module."): v for k, v in release.items()}
    model = LocalMaskedModel(
        embed_dim=192, depth=2, num_heads=3, pred_dim=128, pred_depth=1, pred_heads=4
    )
    missing, unexpected = model.load_state_dict(release, strict=False)
    assert missing == []
    assert sorted({k.split(".")[0] for k in unexpected}) == [
        "pos_embed", "sarfeature1", "sarfeature2", "sarfeature3", "sarfeature4",
    ]  # fmt: skip
    out = model(sar_batch(2, 224, seed=1), torch_generator(0, "m"))
    assert torch.isfinite(out["loss"])


def test_mask_type_choices():
    cfg = tiny_cfg("sarjepa", MASK={"TYPE": "random"})
    model = build_pretrain_model(cfg)
    assert model.mask_type == "random" and model.mask_ratio == 0.75
    assert torch.isfinite(model(sar_batch(2, 64), torch_generator(0, "m"))["loss"])
    with pytest.raises(ConfigError, match="mae"):
        build_pretrain_model(tiny_cfg("mae", MASK={"TYPE": "local"}))


def test_ijepa_ema_moves_target_encoder_towards_encoder():
    model = build_pretrain_model(tiny_cfg("ijepa", IJEPA={"EMA": (0.5, 0.5)}))
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    before = model.target_encoder.norm.weight.clone()
    model.after_step(0.0)
    assert torch.allclose(model.target_encoder.norm.weight, before + 0.5)
