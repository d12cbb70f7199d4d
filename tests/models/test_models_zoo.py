"""The SAR backbone zoo: SARATR-X, SARMAE and I-JEPA files against ../shared/vectors/zoo.

The vectors were computed with each release's own code; these tests go through the public
``build_backbone(name, weights=...)`` path only.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sarfewshot.errors import ConfigError, WeightsError
from sarfewshot.models import build_backbone, describe_arch, parse_arch
from sarfewshot.models.arch import is_partial_arch

ZOO = ("saratrx", "sarmae", "ijepa")


def _vectors(zoo, name):
    v = np.load(zoo / f"{name}_features.npz")
    return v, json.loads(str(v["meta"]))


@pytest.mark.parametrize("name", ZOO)
def test_zoo_vectors_are_reproduced(zoo, name):
    v, meta = _vectors(zoo, name)
    heads = meta["geometry"]["num_heads"]
    size = int(v["input"].shape[-1])
    path = zoo / f"{name}_ckpt.pth"
    net = build_backbone(name, weights=path, img_size=size, arch=f"heads={heads}")
    x = torch.from_numpy(v["input"])
    with torch.inference_mode():
        got = net.eval().forward_features(x).numpy()
        fed = net.adapter(x).numpy()
    assert got.shape == v["features"].shape
    assert np.abs(got - v["features"]).max() <= 1e-4
    assert np.abs(fed - v["model_input"]).max() <= 1e-6  # the adaptation inside the wrapper
    info = net.backbone_info
    assert info["input"]["channels"] == 3 and info["input"]["replicate"]
    assert ("mean" in info["input"]) == (name == "ijepa")  # ImageNet normalisation: I-JEPA only
    assert info["arch_source"] == "checkpoint" and info["arch_given"] == f"heads={heads}"
    assert f"with --arch heads={heads}" in describe_arch(info)
    assert info["load"]["missing"] == (0 if name == "ijepa" else 2)  # fresh fc_norm


@pytest.mark.parametrize("name", ZOO)
def test_the_head_count_error_shows_the_partial_arch_form(zoo, name):
    with pytest.raises(WeightsError, match=r"pass --arch heads=H \(Python: arch=\"heads=H\""):
        build_backbone(name, weights=zoo / f"{name}_ckpt.pth", img_size=64)


def test_each_zoo_name_refuses_another_family(zoo):
    for name, other in (("saratrx", "sarmae"), ("sarmae", "saratrx"), ("ijepa", "saratrx")):
        with pytest.raises(WeightsError, match=rf"backbone '{name}' expects .*but the file holds"):
            build_backbone(name, weights=zoo / f"{other}_ckpt.pth", img_size=64, arch="heads=2")
    with pytest.raises(WeightsError, match="expects .*holds a HiViT"):
        build_backbone("sarjepa", weights=zoo / "saratrx_ckpt.pth", img_size=64)
    with pytest.raises(WeightsError, match="holds a SARMAE pretraining file"):
        build_backbone("mae", weights=zoo / "sarmae_ckpt.pth", img_size=64)


def test_ijepa_reads_target_encoder_not_encoder(zoo, tmp_path):
    ckpt = torch.load(zoo / "ijepa_ckpt.pth", weights_only=True)
    swapped = {**ckpt, "target_encoder": ckpt["encoder"]}
    torch.save(swapped, tmp_path / "swapped.pth")
    v, _ = _vectors(zoo, "ijepa")
    net = build_backbone("ijepa", weights=tmp_path / "swapped.pth", img_size=64, arch="heads=2")
    with torch.inference_mode():
        got = net.eval().forward_features(torch.from_numpy(v["input"])).numpy()
    assert np.abs(got - v["features"]).max() > 1e-3


def test_sarmae_vit_large_geometry_needs_no_heads(tmp_path):
    # a ViT-L-wide SARMAE file (2 blocks keep it small): width 1024 -> 16 heads, inferred
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(
        img_size=32, patch_size=16, in_chans=3, num_classes=0, embed_dim=1024, depth=2,
        num_heads=16, global_pool="avg", fc_norm=True,
    )  # fmt: skip
    model = {f"sar_encoder.{k}": v for k, v in vit.state_dict().items() if not k.startswith("fc_")}
    model["sar_encoder.norm.weight"] = torch.ones(1024)
    model["optical_encoder.cls_token"] = torch.zeros(1, 1, 48)
    torch.save({"model": model, "epoch": 1}, tmp_path / "sarmae_l.pth")
    net = build_backbone("sarmae", weights=tmp_path / "sarmae_l.pth", img_size=32).eval()
    assert net.backbone_info["arch"].startswith("vit:patch=16,dim=1024,depth=2,heads=16,chans=3")
    assert net.backbone_info["load"]["dropped_other_modules"] == 1
    x = torch.rand(2, 1, 32, 32)
    with torch.inference_mode():
        want = vit.eval().forward_head(vit.forward_features(x.repeat(1, 3, 1, 1)), pre_logits=True)
        assert torch.allclose(net.forward_features(x), want, atol=1e-5)


def test_partial_arch_fills_only_its_fields():
    assert is_partial_arch("heads=3") and not is_partial_arch("vit:patch=8,dim=64,depth=1,heads=2")
    assert not is_partial_arch("vit_base_patch16")
    net = build_backbone("random", arch="heads=4", img_size=32)  # over the name's default
    assert net.backbone_info["arch"] == "irpe:patch=16,dim=768,depth=12,heads=4"
    with pytest.raises(ConfigError, match="not divisible by heads"):
        build_backbone("random", arch="heads=5", img_size=32)
    with pytest.raises(ConfigError, match="unknown field"):
        build_backbone("random", arch="hedas=4", img_size=32)


def test_hivit_arch_string_round_trips():
    arch = parse_arch("hivit:patch=16,dim=64,depths=1-1-2,heads=2,chans=3")
    assert arch.depths == (1, 1, 2) and arch.depth == 2 and not arch.class_token
    assert parse_arch(arch.to_string()) == arch
    assert parse_arch("hivit_base_patch16").to_string() == (
        "hivit:patch=16,dim=512,depths=2-2-20,heads=8,chans=3"
    )
