"""Hub-named backbones (DINOv2, DINOv3, PE-Core): `sarfewshot backbones` lists them with their
hub sources, a local copy wins over the hub, and an offline miss names the URI."""

from __future__ import annotations

import pytest

from sarfewshot.cli.main import main
from sarfewshot.errors import WeightsError
from sarfewshot.models import build_backbone
from sarfewshot.models.registry import default_weights, get_backbone_spec

HUB = {
    "dinov2_vits14": "vit_small_patch14_dinov2.lvd142m",
    "dinov2_vitb14": "vit_base_patch14_dinov2.lvd142m",
    "dinov3_vits16": "vit_small_patch16_dinov3.lvd1689m",
    "dinov3_vitb16": "vit_base_patch16_dinov3.lvd1689m",
    "dinov3_vitl16_sat": "vit_large_patch16_dinov3.sat493m",
    "pe_core_b16": "vit_pe_core_base_patch16_224.fb",
}


def test_backbones_lists_the_six_names_with_their_hub_sources(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SARFEWSHOT_WEIGHTS", raising=False)
    (tmp_path / "dinov3_vits16.safetensors").write_bytes(b"")  # presence is all it checks
    assert main(["backbones", "--weights-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for name, tag in HUB.items():
        assert rows[name][4] == f"{name}.safetensors", name
        assert rows[name][-1] == ("found" if name == "dinov3_vits16" else "hub"), name
        assert f"- {name}: hf: hf://timm/{tag}/model.safetensors" in out
    assert rows["dinov3_vitl16_sat"][1] == "dinov3" and rows["pe_core_b16"][1] == "pecore"


def test_a_local_copy_wins_over_the_hub(tmp_path):
    spec = get_backbone_spec("dinov2_vits14")
    uri = f"hf://timm/{HUB['dinov2_vits14']}/model.safetensors"
    assert default_weights(spec, None, tmp_path) == uri
    (tmp_path / "dinov2_vits14.safetensors").write_bytes(b"")
    assert default_weights(spec, None, tmp_path) is None  # resolve_weights then finds the file
    assert default_weights(spec, "given.pth", tmp_path) == "given.pth"
    assert default_weights(get_backbone_spec("sarmae"), None, None) is None  # not hub_default


def test_offline_without_the_file_cached_names_the_uri(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("SARFEWSHOT_WEIGHTS", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        build_backbone("pe_core_b16", img_size=32)
    text = str(err.value)
    assert f"hf://timm/{HUB['pe_core_b16']}/model.safetensors" in text and "HF_HUB_OFFLINE" in text
