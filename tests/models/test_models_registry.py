"""Backbone registry: plain timm ViTs, I-JEPA encoders, random init, weights lookup, archs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from sarfewshot.errors import ConfigError, UnknownNameError, WeightsError
from sarfewshot.models import (
    backbone_status,
    build_backbone,
    describe_arch,
    extract_features,
    list_archs,
    list_backbones,
    parse_arch,
)
from tests.models.modelkit import random_irpe_state, save_release_checkpoint

RELEASE_NAMES = {
    "sarjepa", "sarjepa_gauss", "mae", "lomar", "lomar_sar", "fgmae", "lowpass", "sar_hog",
    "pgga", "ijepa", "random",
}  # fmt: skip


def _tiny_vit(cls: bool, img: int = 32, seed: int = 0, dim: int = 192) -> VisionTransformer:
    # width 192 is ViT-Ti's, whose head count (3) the loader knows; one block keeps it small
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = VisionTransformer(
            img_size=img, patch_size=8, in_chans=1, num_classes=0, embed_dim=dim, depth=1,
            num_heads=3 if dim == 192 else 2, class_token=cls,
            global_pool="token" if cls else "avg", fc_norm=False,
        )  # fmt: skip
        with torch.no_grad():
            vit.pos_embed.normal_(0, 0.5)  # timm zero-inits nothing here, but make it matter
    return vit.eval()


def test_registered_names():
    assert set(list_backbones()) >= RELEASE_NAMES
    assert {"irpe_vit_base_patch16", "irpe_vit_micro_patch8"} <= set(list_archs())
    with pytest.raises(UnknownNameError, match="sarjepa"):
        build_backbone("no_such_backbone")


def test_mae_style_plain_vit_with_pos_embed_interpolation(tmp_path):
    vit = _tiny_vit(cls=True)
    extras = {"mask_token": torch.zeros(1, 1, 192), "decoder_pred.weight": torch.ones(64, 192)}
    path = tmp_path / "mae.pth"
    torch.save({"model": {**vit.state_dict(), **extras}, "epoch": 1}, path)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))

    same = build_backbone("mae", weights=path, img_size=32).eval()
    assert same.backbone_info["family"] == "timm"
    assert same.backbone_info["arch"] == "vit:patch=8,dim=192,depth=1,heads=3"
    with torch.inference_mode():
        want = vit.forward_head(vit.forward_features(x), pre_logits=True)
        assert torch.allclose(same.forward_features(x), want, atol=1e-6)

    big = build_backbone("mae", weights=path, img_size=48)
    pos = big.model.pos_embed.detach()
    assert pos.shape == (1, 1 + 36, 192)
    assert torch.equal(pos[:, :1], vit.pos_embed[:, :1])  # the class slot is kept as is
    grid = vit.pos_embed[:, 1:].detach().reshape(1, 4, 4, 192).permute(0, 3, 1, 2)
    want = F.interpolate(grid, size=(6, 6), mode="bicubic", align_corners=False)
    assert torch.allclose(pos[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 36, 192), atol=1e-6)
    assert big.forward_features(torch.rand(1, 1, 48, 48)).shape == (1, 192)


def test_plain_vit_of_unusual_width_needs_an_arch(tmp_path):
    vit = _tiny_vit(cls=True, dim=32)
    path = tmp_path / "odd.pth"
    torch.save(vit.state_dict(), path)
    with pytest.raises(WeightsError, match="head count.*--arch vit:patch=8,dim=32,depth=1"):
        build_backbone("mae", weights=path, img_size=32)
    net = build_backbone(
        "mae", weights=path, arch="vit:patch=8,dim=32,depth=1,heads=2", img_size=32
    )
    x = torch.rand(1, 1, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(net.forward_features(x), vit.forward_features(x)[:, 0], atol=1e-6)


def test_ijepa_encoder_layout_is_mean_pooled(tmp_path):
    enc, target = _tiny_vit(cls=False, seed=1), _tiny_vit(cls=False, seed=2)
    path = tmp_path / "ijepa.pth"
    torch.save(
        {
            "encoder": {"module." + k: v for k, v in enc.state_dict().items()},
            "predictor": {"module.predictor_embed.weight": torch.zeros(4, 192)},
            "target_encoder": {"module." + k: v for k, v in target.state_dict().items()},
            "epoch": 10,
        },
        path,
    )
    net = build_backbone("ijepa", weights=path, img_size=32).eval()
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        # an I-JEPA file: the target (EMA) encoder is the one evaluated, as in the paper
        want_target = target.forward_features(x).mean(dim=1)  # norm on every token, then mean
        assert torch.allclose(net.forward_features(x), want_target, atol=1e-6)
        want = enc.forward_features(x).mean(dim=1)
    assert net.backbone_info["input"] == {"kind": "grey1", "channels": 1}  # 1-channel file
    assert "cls=0" in net.backbone_info["arch"]
    # one flat state dict, as this toolkit's pretraining writes it
    flat = {"encoder." + k: v for k, v in enc.state_dict().items()}
    flat.update({"target_encoder." + k: v for k, v in target.state_dict().items()})
    flat["predictor.predictor_embed.weight"] = torch.zeros(4, 192)
    torch.save({"model": flat, "epoch": 3}, tmp_path / "flat.pth")
    again = build_backbone("ijepa", weights=tmp_path / "flat.pth", img_size=32).eval()
    assert again.backbone_info["load"]["ignored"] == len(enc.state_dict()) + 1
    with torch.inference_mode():
        assert torch.allclose(again.forward_features(x), want, atol=1e-6)


def test_irpe_keys_win_over_the_default_family(tmp_path):
    state = random_irpe_state(8, 32, 2, 2, 4.0, True, torch.Generator().manual_seed(0))
    extras = {"pos_embed": torch.zeros(1, 17, 32)}
    path = save_release_checkpoint(tmp_path / "m.pth", state, extras)
    net = build_backbone("mae", weights=path, img_size=32)
    assert net.backbone_info["family"] == "irpe"


def test_random_backbone_is_deterministic_by_seed():
    state = torch.get_rng_state()
    a = build_backbone("random", arch="irpe_vit_micro_patch8", seed=0)
    b = build_backbone("random", arch="irpe_vit_micro_patch8", seed=0)
    c = build_backbone("random", arch="irpe_vit_micro_patch8", seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["blocks.0.attn.qkv.weight"], sc["blocks.0.attn.qkv.weight"])
    assert a.backbone_info["weights"] is None and a.backbone_info["seed"] == 0
    with pytest.raises(ConfigError, match="takes no weights"):
        build_backbone("random", weights="x.pth")


def test_weights_found_through_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SARFEWSHOT_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match=r"sarjepa\.pth.*--weights.*SAR-JEPA"):
        build_backbone("sarjepa")
    assert backbone_status("sarjepa")["found"] is False
    state = random_irpe_state(8, 64, 2, 2, 4.0, True, torch.Generator().manual_seed(0))
    save_release_checkpoint(tmp_path / "sarjepa.pth", state, {})
    assert backbone_status("sarjepa")["found"] is True
    net = build_backbone("sarjepa", img_size=32)
    assert net.backbone_info["weights"] == str(tmp_path / "sarjepa.pth")
    with pytest.raises(WeightsError, match="file not found"):
        build_backbone("sarjepa", weights=tmp_path / "other.pth")


def test_timm_name_and_arch_strings():
    net = build_backbone("timm:vit_tiny_patch16_224", img_size=32, seed=3)
    assert net.num_features == 192
    assert net.forward_features(torch.rand(1, 1, 32, 32)).shape == (1, 192)
    with pytest.raises(UnknownNameError, match="timm"):
        build_backbone("timm:not_a_model_xyz")
    spec = parse_arch("irpe:patch=8,dim=64,depth=2,heads=2,cls=0")
    assert spec.global_pool == "avg" and parse_arch(spec.to_string()) == spec
    for bad in ("irpe:patch=8,dim=64", "irpe:patch=8,dim=63,depth=1,heads=2", "foo", "irpe:x=1"):
        with pytest.raises(ConfigError):
            parse_arch(bad)


def test_extract_features_batches_and_scales():
    net = build_backbone("random", arch="irpe_vit_micro_patch8", seed=0)
    images = torch.randint(0, 256, (5, 1, 32, 32), dtype=torch.uint8)
    feats = extract_features(net, images, batch_size=2, progress=False)
    assert feats.shape == (5, 64) and feats.dtype == torch.float32
    whole = extract_features(net, images.float() / 255.0, batch_size=8, progress=False)
    assert torch.allclose(feats, whole, atol=1e-5)
    assert net.training  # mode restored


def test_pretraining_method_names_are_backbone_names():
    """Every method `sarfewshot pretrain` offers has a backbone entry of its name for `eval`."""
    from sarfewshot.models.registry import BACKBONE_REGISTRY
    from sarfewshot.pretrain.methods import list_methods

    for method in list_methods():
        assert method in BACKBONE_REGISTRY, method
    assert BACKBONE_REGISTRY.get("hog").family == "irpe"


def _timm_vit_tiny(path):
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(timm.create_model("vit_tiny_patch16_224").state_dict(), path)
    return path


def test_registered_name_refuses_a_checkpoint_of_another_family(tmp_path):
    path = _timm_vit_tiny(tmp_path / "vit_tiny.pth")
    with pytest.raises(WeightsError) as err:
        build_backbone("sarjepa", weights=path, img_size=32)
    text = str(err.value)
    assert str(path) in text and "'sarjepa'" in text
    assert "expects the iRPE ViT of the SAR-JEPA release" in text
    assert "holds a plain timm ViT" in text
    assert "--arch vit:patch=16,dim=192,depth=12,heads=3" in text
    # an explicit arch says what to build; a timm name and a plain-ViT baseline take the file
    net = build_backbone("sarjepa", weights=path, arch="vit_tiny_patch16", img_size=32)
    assert net.backbone_info["arch_source"] == "arch"
    assert net.backbone_info["load"]["missing"] == 0
    timm_net = build_backbone("timm:vit_tiny_patch16_224", weights=path, img_size=32)
    assert timm_net.backbone_info["arch_source"] == "name"
    assert timm_net.backbone_info["load"]["loaded"] == net.backbone_info["load"]["loaded"]
    mae = build_backbone("mae", weights=path, img_size=32)
    assert mae.backbone_info["arch_source"] == "checkpoint"


def test_ijepa_refuses_irpe_and_every_name_refuses_an_unknown_layout(tmp_path):
    state = random_irpe_state(8, 32, 2, 2, 4.0, True, torch.Generator().manual_seed(0))
    irpe = save_release_checkpoint(tmp_path / "irpe.pth", state, {})
    with pytest.raises(WeightsError, match=r"irpe\.pth: backbone 'ijepa' expects a plain timm"):
        build_backbone("ijepa", weights=irpe, img_size=32)
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 1, 3, 3), "fc.weight": torch.zeros(2, 8)}, other)
    for name in ("sarjepa", "mae"):
        with pytest.raises(WeightsError, match=rf"resnet\.pth: backbone '{name}'.*unrecognised"):
            build_backbone(name, weights=other, img_size=32)


def test_arch_source_and_its_description(tmp_path):
    state = random_irpe_state(8, 32, 2, 2, 4.0, True, torch.Generator().manual_seed(0))
    path = save_release_checkpoint(tmp_path / "m.pth", state, {})
    inferred = build_backbone("sarjepa", weights=path, img_size=32).backbone_info
    assert inferred["arch_source"] == "checkpoint"
    assert describe_arch(inferred) == (
        f"sarjepa: arch irpe:patch=8,dim=32,depth=2,heads=2 (inferred from the checkpoint {path})"
    )
    default = build_backbone("random", img_size=32).backbone_info
    assert default["arch_source"] == "default"
    assert "registry default for a weight-less backbone" in describe_arch(default)
    given = build_backbone("random", arch="irpe_vit_micro_patch8", img_size=32).backbone_info
    assert given["arch_source"] == "arch" and "given by --arch" in describe_arch(given)


def test_feature_extraction_is_fp32_unless_bf16_is_asked(monkeypatch):
    from sarfewshot.models.features import precision_context

    net = build_backbone("random", arch="irpe_vit_micro_patch8", img_size=32, seed=0)
    images = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    real, calls = torch.autocast, []

    def spy(device_type, *args, **kwargs):
        calls.append((device_type, kwargs.get("dtype")))
        return real(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    fp32 = extract_features(net, images, progress=False)
    precision_context("cuda")  # the GPU default builds no autocast either
    assert calls == []
    bf16 = extract_features(net, images, progress=False, precision="bf16")
    assert calls == [("cpu", torch.bfloat16)] and bf16.dtype == torch.float32
    assert 0 < (bf16 - fp32).abs().max().item() < 0.1  # really computed in bfloat16
    with pytest.raises(ConfigError, match="MODEL.PRECISION"):
        extract_features(net, images, progress=False, precision="fp16")
