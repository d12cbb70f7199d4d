"""PE-Core B/16 under its own name: timm's architecture read from hub .safetensors, offline."""

from __future__ import annotations

import pytest
import torch

from sarfewshot.errors import ConfigError
from sarfewshot.models import build_backbone, lora_targets
from sarfewshot.models.build import INPUT_ADAPTERS
from sarfewshot.models.registry import get_backbone_spec
from sarfewshot.models.zoo import pecore
from tests.models import hubkit

ARCH = "vit_pe_core_base_patch16_224"
TAG = f"{ARCH}.fb"
URI = f"hf://timm/{TAG}/model.safetensors"


@pytest.fixture(scope="module")
def b16(tmp_path_factory):
    """Random PE-Core B/16 weights (the real architecture, with its pooling head and
    projection) in a local hub cache."""
    return hubkit.cached_random(tmp_path_factory.mktemp("pecore"), ARCH, TAG, seed=5)


def test_the_features_equal_timms_forward_of_the_same_input(b16, monkeypatch):
    cache, path = b16
    hubkit.offline(monkeypatch, cache)
    net, ours, theirs = hubkit.features_and_reference(
        "pe_core_b16",
        ARCH,
        TAG,
        path,
        32,
        lambda model, x: model(x),  # pooling + projection
    )
    assert ours.shape == (3, 1024) and net.num_features == 1024
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    info = net.backbone_info
    assert info["weights"] == URI and info["family"] == "pecore" and info["load"]["missing"] == 0
    assert info["feature"] == pecore.FEATURE and info["input"]["kind"] == "grey3_half"


def test_the_normalisation_is_timms_pretrained_config():
    import timm

    cfg = timm.models.get_pretrained_cfg(TAG).to_dict()
    channels, (mean, std) = INPUT_ADAPTERS[get_backbone_spec("pe_core_b16").input_adapter]
    assert channels == 3 and mean == pytest.approx(cfg["mean"]) and std == pytest.approx(cfg["std"])
    assert cfg["num_classes"] == pecore.PROJECTION  # timm's head is PE's projection


def test_an_img_size_off_the_patch_grid_is_refused(b16, monkeypatch):
    hubkit.offline(monkeypatch, b16[0])
    with pytest.raises(ConfigError, match=r"--img-size 100: .*\(e\.g\. --img-size 96 or 112\)"):
        build_backbone("pe_core_b16", img_size=100)


def test_lora_targets_leave_the_pooling_head_and_patch_embedding_alone():
    assert lora_targets("pe_core_b16") == ("attn.qkv", "attn.proj")
    net = hubkit.build_meta("pe_core_b16")
    from sarfewshot.models.adapt import lora_layer_names

    hits = lora_layer_names(net, lora_targets("pe_core_b16"), "TRAINER.LORA.TARGETS")
    assert len(hits) == 24 and not any("attn_pool" in n or "patch_embed" in n for n in hits)


def test_eval_runs_offline_from_the_hub_cache(b16, tmp_path):
    cache, path = b16
    records = hubkit.eval_offline(tmp_path, cache, "pe_core_b16", 32)
    assert set(records) == {"knn", "linear"}
    for record in records.values():
        assert record["status"] == "ok" and record["backbone"]["num_features"] == 1024
        hubkit.check_record(record, URI, path, "pecore", pecore.FEATURE)
