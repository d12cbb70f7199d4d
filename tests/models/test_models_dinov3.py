"""DINOv3 (natural and satellite) under its own names: timm's architecture from hub .safetensors."""

from __future__ import annotations

import pytest
import torch

from sarfewshot.errors import ConfigError
from sarfewshot.models import build_backbone, lora_targets
from sarfewshot.models.build import INPUT_ADAPTERS
from sarfewshot.models.registry import get_backbone_spec
from sarfewshot.models.zoo import dinov3
from tests.models import hubkit

ARCH = "vit_small_patch16_dinov3"
TAG = f"{ARCH}.lvd1689m"
URI = f"hf://timm/{TAG}/model.safetensors"
NAMES = {
    "dinov3_vits16": ("vit_small_patch16_dinov3", "lvd1689m"),
    "dinov3_vitb16": ("vit_base_patch16_dinov3", "lvd1689m"),
    "dinov3_vitl16_sat": ("vit_large_patch16_dinov3", "sat493m"),
}


@pytest.fixture(scope="module")
def vits16(tmp_path_factory):
    """Random ViT-S/16 weights (the real architecture: RoPE, 4 registers) in a hub cache."""
    return hubkit.cached_random(tmp_path_factory.mktemp("dinov3"), ARCH, TAG, seed=4)


def test_the_features_equal_timms_forward_of_the_same_input(vits16, monkeypatch):
    cache, path = vits16
    hubkit.offline(monkeypatch, cache)
    net, ours, theirs = hubkit.features_and_reference(
        "dinov3_vits16", ARCH, TAG, path, 32, hubkit.class_and_patch_mean
    )
    assert ours.shape == (3, 768) and net.num_features == 768
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    info = net.backbone_info
    assert info["weights"] == URI and info["family"] == "dinov3" and info["load"]["missing"] == 0
    assert info["feature"] == dinov3.FEATURE and info["input"]["kind"] == "grey3_imagenet"


@pytest.mark.parametrize("name", sorted(NAMES))
def test_each_name_normalises_with_timms_pretrained_config(name):
    import timm

    arch, tag = NAMES[name]
    spec = get_backbone_spec(name)
    cfg = timm.models.get_pretrained_cfg(f"{arch}.{tag}").to_dict()
    channels, (mean, std) = INPUT_ADAPTERS[spec.input_adapter]
    assert channels == 3 and mean == pytest.approx(cfg["mean"]) and std == pytest.approx(cfg["std"])
    assert spec.sources[0].uri() == f"hf://timm/{arch}.{tag}/model.safetensors"


@pytest.mark.parametrize("name", ["dinov3_vitb16", "dinov3_vitl16_sat"])
def test_the_larger_specs_build_timms_architecture(name):
    """ViT-B and the satellite ViT-L: shapes only (the S/16 runs the whole path)."""
    net = hubkit.build_meta(name)
    assert hubkit.same_shapes(net.model, NAMES[name][0], num_classes=0)


def test_an_img_size_off_the_patch_grid_is_refused(vits16, monkeypatch):
    hubkit.offline(monkeypatch, vits16[0])
    with pytest.raises(ConfigError, match=r"--img-size 40: .*multiple of its patch size 16"):
        build_backbone("dinov3_vits16", img_size=40)


def test_lora_targets_are_the_block_attention_layers():
    assert lora_targets("dinov3_vitl16_sat") == ("attn.qkv", "attn.proj")


def test_eval_runs_offline_from_the_hub_cache(vits16, tmp_path):
    cache, path = vits16
    records = hubkit.eval_offline(tmp_path, cache, "dinov3_vits16", 32)
    assert set(records) == {"knn", "linear"}
    for record in records.values():
        assert record["status"] == "ok"
        hubkit.check_record(record, URI, path, "dinov3", dinov3.FEATURE)
