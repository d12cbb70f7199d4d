"""DINOv2 under its own names: timm's architecture read from hub .safetensors, offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from sarfewshot.errors import ConfigError
from sarfewshot.models import build_backbone, lora_targets
from sarfewshot.models.build import INPUT_ADAPTERS
from sarfewshot.models.registry import get_backbone_spec
from sarfewshot.models.zoo import dinov2
from tests.models import hubkit

ARCH = "vit_small_patch14_dinov2"
TAG = f"{ARCH}.lvd142m"
URI = f"hf://timm/{TAG}/model.safetensors"
MODELS = Path(__file__).resolve().parents[2] / "sarfewshot" / "models"


@pytest.fixture(scope="module")
def vits14(tmp_path_factory):
    """Random ViT-S/14 weights (the real architecture, 518 px grid) in a local hub cache."""
    return hubkit.cached_random(tmp_path_factory.mktemp("dinov2"), ARCH, TAG, seed=3)


def test_the_features_equal_timms_forward_of_the_same_input(vits14, monkeypatch):
    cache, path = vits14
    hubkit.offline(monkeypatch, cache)
    net, ours, theirs = hubkit.features_and_reference(
        "dinov2_vits14", ARCH, TAG, path, 28, hubkit.class_and_patch_mean
    )
    assert ours.shape == (3, 768) and net.num_features == 768
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    info = net.backbone_info
    assert info["weights"] == URI and info["weights_path"] == str(path)
    assert info["family"] == "dinov2" and info["load"]["missing"] == 0
    assert info["input"]["kind"] == "grey3_imagenet" and info["feature"] == dinov2.FEATURE


def test_the_normalisation_is_timms_pretrained_config():
    import timm

    cfg = timm.models.get_pretrained_cfg(TAG).to_dict()
    for name in ("dinov2_vits14", "dinov2_vitb14"):
        channels, (mean, std) = INPUT_ADAPTERS[get_backbone_spec(name).input_adapter]
        assert (
            channels == 3
            and mean == pytest.approx(cfg["mean"])
            and std == pytest.approx(cfg["std"])
        )


def test_an_img_size_off_the_patch_grid_is_refused_naming_the_flag(vits14, monkeypatch):
    hubkit.offline(monkeypatch, vits14[0])
    with pytest.raises(ConfigError) as err:
        build_backbone("dinov2_vits14", img_size=32)
    assert "--img-size 32" in str(err.value) and "multiple of its patch size 14" in str(err.value)
    assert "--img-size 28 or 42" in str(err.value)


def test_vitb14_spec_builds_timms_architecture():
    """ViT-B/14: the spec's geometry is timm's model (no forward: the S/14 tests the path)."""
    spec = get_backbone_spec("dinov2_vitb14")
    assert spec.sources[0].uri() == "hf://timm/vit_base_patch14_dinov2.lvd142m/model.safetensors"
    net = hubkit.build_meta("dinov2_vitb14")
    assert hubkit.same_shapes(net.model, "vit_base_patch14_dinov2", num_classes=0)
    assert net.num_features == 1536


def test_lora_targets_are_the_block_attention_layers(vits14, monkeypatch):
    """The family's suffix targets wrap each block's qkv and proj, and fresh adapters leave
    the features as they were (the lora protocol's starting point)."""
    from sarfewshot.models import adapt

    assert lora_targets("dinov2_vits14") == ("attn.qkv", "attn.proj")
    hubkit.offline(monkeypatch, vits14[0])
    net = build_backbone("dinov2_vits14", img_size=28).eval()
    grey = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        frozen = net.forward_features(grey)
    wrapped = adapt.add_lora(net, 4, 8.0, 0.0, adapt.default_lora_targets(net), seed=0)
    assert len(wrapped) == 24 and all(n.endswith(("attn.qkv", "attn.proj")) for n in wrapped)
    with torch.no_grad():
        assert torch.equal(net.forward_features(grey), frozen)


def test_the_generic_modules_do_not_name_the_family():
    for name in ("checkpoint.py", "build.py", "factory.py", "registry.py", "family.py"):
        assert not re.search(r"dino|pe_core|pecore", (MODELS / name).read_text(), re.I), name


def test_eval_runs_offline_from_the_hub_cache(vits14, tmp_path):
    cache, path = vits14
    records = hubkit.eval_offline(tmp_path, cache, "dinov2_vits14", 28)
    assert set(records) == {"knn", "linear"}
    for record in records.values():
        assert record["status"] == "ok"
        hubkit.check_record(record, URI, path, "dinov2", dinov2.FEATURE)
        assert record["backbone"]["input"]["kind"] == "grey3_imagenet"


def test_a_cache_blob_without_the_suffix_is_read_as_safetensors(vits14, monkeypatch):
    """A Hugging Face cache keeps the bytes under blobs/<sha256>: the header says safetensors."""
    import shutil

    from sarfewshot.models.checkpoint import is_safetensors, safe_load

    cache, path = vits14
    blob = cache.parent / "blob_0123"
    shutil.copyfile(path, blob)
    assert is_safetensors(blob) and safe_load(blob).keys() == safe_load(path).keys()
    torch.save({"w": torch.zeros(2)}, cache.parent / "plain.pth")
    assert not is_safetensors(cache.parent / "plain.pth")
    hubkit.offline(monkeypatch, cache)
    net = build_backbone("dinov2_vits14", weights=blob, img_size=28)
    assert net.backbone_info["weights"] == str(blob) and net.backbone_info["load"]["missing"] == 0
