"""The release preset is the release's numerics; the fast preset differs in three keys only."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sarfewshot.errors import ConfigError
from sarfewshot.pretrain.config import setup_pretrain_cfg
from sarfewshot.pretrain.methods import build_pretrain_model
from sarfewshot.pretrain.model import LocalMaskedModel
from sarfewshot.pretrain.train import amp_dtype, resolve_config

# the numerics that separate the release preset from the fast one: key -> (release, fast)
NUMERICS = {
    ("TRAIN", "AMP"): ("none", "bf16"),
    ("MODEL", "INIT"): ("xavier", "trunc_normal"),
    ("MASK", "WINDOW_DRAW"): ("distinct", "uniform"),
}
# ViT geometry small enough for the CPU (the init and masking rules do not depend on it)
SMALL = {
    "INPUT": {"SIZE": 64},
    "MODEL": {
        "PATCH_SIZE": 8,
        "EMBED_DIM": 64,
        "DEPTH": 2,
        "NUM_HEADS": 2,
        "PRED_DIM": 32,
        "PRED_DEPTH": 1,
        "PRED_HEADS": 2,
    },  # fmt: skip
    "MASK": {"WINDOW": 4},
}


def _preset(name: str, **overrides):
    return setup_pretrain_cfg(resolve_config(name), overrides=overrides or None)


def _flat(cfg, prefix=()):
    for key, value in cfg.items():
        if hasattr(value, "items"):
            yield from _flat(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def test_release_preset_is_fp32_xavier_distinct_windows():
    cfg = _preset("sarjepa_vit_b16")
    assert {key: cfg[key[0]][key[1]] for key in NUMERICS} == {k: v[0] for k, v in NUMERICS.items()}
    # no autocast on CUDA either: the release trains in float32
    assert amp_dtype(cfg, torch.device("cuda")) is None
    fast = _preset("sarjepa_vit_b16_fast")
    assert amp_dtype(fast, torch.device("cuda")) == torch.bfloat16
    differ = {k for (k, a), (_, b) in zip(_flat(cfg), _flat(fast)) if a != b}
    assert differ == set(NUMERICS)


def test_release_preset_builds_the_release_model():
    model = build_pretrain_model(_preset("sarjepa_vit_b16", **SMALL))
    assert isinstance(model, LocalMaskedModel) and model.window_draw == "distinct"
    _assert_xavier(model)
    fast = build_pretrain_model(_preset("sarjepa_vit_b16_fast", **SMALL))
    assert fast.window_draw == "uniform"
    # trunc-normal(0.02) weights stay far inside the Xavier bound, and the conv bias is zero
    assert fast.decoder_blocks[0].mlp.fc1.weight.abs().max() < 0.1
    assert torch.count_nonzero(fast.patch_embed.proj.bias) == 0


def _assert_xavier(model: nn.Module) -> None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) > 10
    for layer in linears:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = layer.weight.detach()
        assert w.abs().max() <= bound
        # uniform on [-bound, bound]: fills the range, variance bound^2 / 3
        assert w.abs().max() > 0.9 * bound
        assert w.var().item() == pytest.approx(bound**2 / 3, rel=0.25)
        assert torch.count_nonzero(layer.bias) == 0
    proj = model.patch_embed.proj
    fan_in = proj.weight[0].numel()
    conv_bound = 1.0 / math.sqrt(fan_in)  # PyTorch's default Conv2d bias init
    bias = proj.bias.detach()
    assert torch.count_nonzero(bias) == bias.numel()
    assert bias.abs().max() <= conv_bound and bias.abs().max() > 0.5 * conv_bound
    xavier = math.sqrt(6.0 / (fan_in + proj.weight.shape[0]))
    assert proj.weight.abs().max() <= xavier
    assert all(torch.count_nonzero(b.attn.rpe_k.lookup_table_weight) == 0 for b in model.blocks)


def test_xavier_init_is_seeded():
    cfg = _preset("sarjepa_vit_b16", **SMALL)
    a, b = build_pretrain_model(cfg), build_pretrain_model(cfg)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_numerics_keys_are_checked():
    with pytest.raises(ConfigError, match="MODEL.INIT"):
        setup_pretrain_cfg(opts=["MODEL.INIT", "kaiming"])
    with pytest.raises(ConfigError, match="MASK.WINDOW_DRAW"):
        setup_pretrain_cfg(opts=["MASK.WINDOW_DRAW", "shared"])
    # 4 distinct 7-patch windows need 4 offsets; an 8-patch grid has 2: refused at build time
    cramped = _preset("sarjepa_vit_b16", **{**SMALL, "MASK": {"WINDOW": 7}})
    with pytest.raises(ConfigError, match="MASK.NUM_WINDOWS"):
        build_pretrain_model(cramped)
