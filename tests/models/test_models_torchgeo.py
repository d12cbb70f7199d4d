"""``torchgeo:<weights>`` backbones against torchgeo's own model (skipped without torchgeo)."""

from __future__ import annotations

import pytest
import torch

from sarfewshot.errors import ConfigError
from sarfewshot.models import build_backbone

tgm = pytest.importorskip("torchgeo.models")
NAME = "torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO"


def _weights():
    enum = tgm.ResNet50_Weights
    if "SENTINEL1_ALL_MOCO" not in enum.__members__:
        pytest.skip("this torchgeo has no ResNet50 Sentinel-1 weights")
    return enum.SENTINEL1_ALL_MOCO


def test_local_weights_file_matches_torchgeo_model(tmp_path):
    weights = _weights()
    torch.manual_seed(3)
    reference = tgm.resnet50(weights=None, in_chans=2, num_classes=0).eval()
    path = tmp_path / "s1.pth"
    torch.save(reference.state_dict(), path)
    net = build_backbone(NAME, weights=path, img_size=32).eval()
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    normalize = weights.transforms[-1]  # torchgeo's own normalisation of these weights
    db = 20 * torch.log10(x.clamp_min(1e-3)).repeat(1, 2, 1, 1)
    with torch.inference_mode():
        want = reference(normalize(db))
        assert torch.allclose(net.forward_features(x), want, atol=1e-5)
    info = net.backbone_info
    assert info["input"]["bands"] == ["VV", "VH"] and info["input"]["kind"] == "amplitude_db"
    assert info["weights_sha256"] and info["num_features"] == 2048


def test_non_sar_weights_are_refused():
    with pytest.raises(ConfigError, match="not SAR polarisations"):
        build_backbone("torchgeo:ResNet18_Weights.SENTINEL2_RGB_MOCO")
    with pytest.raises(ConfigError, match="torchgeo:<WeightsEnum>.<MEMBER>"):
        build_backbone("torchgeo:NoSuch_Weights.X")
