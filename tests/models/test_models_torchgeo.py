"""``torchgeo:<weights>`` backbones against torchgeo's own model and transforms (no network).

Every supported SAR-band member (ResNet-50, ViTs, DINOv2 ViTs, Swin-V2-B) but the two largest
ViTs: random weights saved locally, loaded by name, features equal to torchgeo's own builder
(its download replaced by the same state dict) fed through the member's own value transforms.
ViT-L/16 and ViT-H/14 (300M+ parameters, too big for a CPU test) are built on the meta device
and compared with torchgeo's network key by key; their numbers take the code path the ViT-S/B
members check. One refusal test per kind of unsupported member or option. Skipped without
torchgeo.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from sarfewshot.errors import ConfigError, WeightsError
from sarfewshot.models import build_backbone

tgm = pytest.importorskip("torchgeo.models")
from sarfewshot.models.zoo.torchgeo import (  # noqa: E402
    _build_net,
    member_status,
    sar_members,
    torchgeo_weights,
)

LARGE = ("vit_large_patch16_224", "vit_huge_patch14_224")  # structure only (module docstring)
SUPPORTED = [n for n in sar_members() if member_status(n)["status"] == "supported"]
TESTED = [n for n in SUPPORTED if torchgeo_weights(n).meta["model"] not in LARGE]
SIZES = {"resnet": 32, "swin": 64, "vit": 224}  # ViTs at the size torchgeo's builder fixes


def _member(enum_name: str, member: str):
    enum = getattr(tgm, enum_name, None)
    if enum is None or member not in enum.__members__:
        pytest.skip(f"this torchgeo has no {enum_name}.{member}")
    return enum[member]


def _torchgeo_model(weights, state, monkeypatch, **kwargs):
    """torchgeo's own builder for ``weights``, its download replaced by ``state``."""
    monkeypatch.setattr(type(weights), "get_state_dict", lambda self, *a, **k: dict(state))
    return tgm.get_model(weights.meta["model"], weights=weights, **kwargs).eval()


def _plain_network(weights) -> torch.nn.Module:
    """torchgeo's network of the member with its head and no weights (what a file holds)."""
    model_name, channels = weights.meta["model"], int(weights.meta["in_chans"])
    if not model_name.startswith("swin"):
        size = {"img_size": weights.meta["img_size"]} if "img_size" in weights.meta else {}
        return tgm.get_model(model_name, in_chans=channels, **size)  # DINOv2: 224, not 518
    model = tgm.get_model(model_name)  # torchvision's Swin: torchgeo swaps the stem conv
    stem = model.features[0][0]
    model.features[0][0] = torch.nn.Conv2d(channels, stem.out_channels, stem.kernel_size, 4)
    return model


def _values(weights, image: torch.Tensor) -> torch.Tensor:
    """The member's own transforms minus the geometric steps (the dataset's crop replaces them)."""
    out = image.clone()
    for step in weights.transforms:
        if type(step).__name__ not in ("Resize", "CenterCrop"):
            out = step(out)
    return out


def _db(x: torch.Tensor, channels: int) -> torch.Tensor:
    return 20 * torch.log10(x.clamp_min(1e-3)).repeat(1, channels, 1, 1)


def _chips(size: int, n: int = 2) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


def _random_state(model: torch.nn.Module, path, seed: int) -> dict:
    torch.manual_seed(seed)
    state = {
        k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    torch.save(state, path)
    return state


def _assert_same(net, reference, weights, x: torch.Tensor, value: torch.Tensor) -> None:
    """``net`` on chips ``x`` equals ``reference`` on ``value`` (their mapped form) after the
    member's own value transforms."""
    with torch.inference_mode():
        want = reference.eval()(_values(weights, value))
        assert torch.allclose(net.eval().forward_features(x), want, atol=1e-5)


@pytest.mark.parametrize("name", TESTED)
def test_each_supported_member_matches_torchgeo(name, tmp_path, monkeypatch):
    weights = torchgeo_weights(name)
    family = next(f for f in SIZES if weights.meta["model"].startswith(f))
    channels, size = int(weights.meta["in_chans"]), SIZES[family]
    state = _random_state(_plain_network(weights), tmp_path / "w.pth", seed=len(name))
    net = build_backbone(name, weights=tmp_path / "w.pth", img_size=size)
    reference = _torchgeo_model(
        weights, state, monkeypatch, **({} if family == "swin" else {"num_classes": 0})
    )
    if family == "swin":
        reference.head = torch.nn.Identity()  # the pooled feature before the classifier
    x = _chips(size)
    info = net.backbone_info["input"]
    if info["kind"] == "amplitude_8bit":
        _assert_same(net, reference, weights, x, (x * 255).repeat(1, channels, 1, 1))
    else:
        _assert_same(net, reference, weights, x, _db(x, channels))
    assert info["bands"] == list(weights.meta["bands"]) and info["calibration"] == "none"
    assert net.backbone_info["weights_sha256"] and net.backbone_info["load"]["missing"] == 0


@pytest.mark.parametrize("name", [n for n in SUPPORTED if n not in TESTED])
def test_large_vit_members_build_torchgeo_s_network(name):
    weights = torchgeo_weights(name)
    with torch.device("meta"):
        ours = _build_net(name, weights, 224)[0]
        theirs = tgm.get_model(weights.meta["model"], in_chans=2, num_classes=0)
    assert type(ours) is type(theirs)
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}


def test_a_vit_member_interpolates_its_position_grid_at_another_size(tmp_path, caplog):
    weights = _member("ViTSmall16_Weights", "SENTINEL1_GRD_MAE")
    state = _random_state(_plain_network(weights), tmp_path / "vit.pth", 4)
    # --img-size 64: the builder gets img_size, the 14x14 position grid is interpolated (said).
    with caplog.at_level(logging.WARNING):
        small = build_backbone(f"torchgeo:{weights}", weights=tmp_path / "vit.pth", img_size=64)
    assert "interpolated (bicubic) from a 14x14 to a 4x4 token grid" in caplog.text
    pos = state["pos_embed"]
    grid = pos[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    moved = dict(state, pos_embed=torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], 1))
    ref64 = tgm.vit_small_patch16_224(in_chans=2, num_classes=0, img_size=64)
    ref64.load_state_dict({k: v for k, v in moved.items() if not k.startswith("head.")})
    x = _chips(64)
    _assert_same(small, ref64, weights, x, _db(x, 2))
    assert small.backbone_info["img_size"] == 64


def test_median_calibration_puts_each_chip_median_on_the_weights_mean(tmp_path):
    weights = _member("ResNet50_Weights", "SENTINEL1_ALL_MOCO")
    _random_state(tgm.resnet50(in_chans=2, num_classes=0), tmp_path / "s1.pth", 3)
    name, path = f"torchgeo:{weights}", tmp_path / "s1.pth"
    plain = build_backbone(name, weights=path, img_size=32)
    calibrated = build_backbone(name, weights=path, img_size=32, input_calibration="median")
    x = _chips(32, 3) * torch.tensor([0.1, 0.5, 1.0]).view(3, 1, 1, 1)  # 3 brightness levels
    z = calibrated.adapt(x)
    assert torch.allclose(z.flatten(2).median(dim=2).values, torch.zeros(3, 2), atol=1e-5)
    assert not torch.allclose(plain.adapt(x), z)
    # a uniform gain (x -> 2 x: +6 dB, above the floor) no longer moves the calibrated input
    chip = 0.05 + 0.4 * _chips(32, 1)
    assert torch.allclose(calibrated.adapt(chip * 2), calibrated.adapt(chip), atol=1e-4)
    assert not torch.allclose(plain.adapt(chip * 2), plain.adapt(chip), atol=1e-2)
    assert calibrated.backbone_info["input"]["calibration"] == "median"


def test_every_sar_member_is_listed_supported_or_refused_in_one_line():
    names = sar_members()
    assert "torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO" in names
    assert not any("SENTINEL2" in n for n in names)
    for name in names:
        row = member_status(name)
        assert row["status"] == "supported" or row["status"].startswith("refused: ")
        assert "\n" not in row["status"]


@pytest.mark.parametrize(
    "name, img_size, calibration, match",
    [
        # non-SAR bands
        ("torchgeo:ResNet18_Weights.SENTINEL2_RGB_MOCO", 32, "none", "not SAR polarisations"),
        # no value normalisation (Identity; a resize alone is the same kind)
        ("torchgeo:ResNet50_Weights.SENTINEL1_GRD_CLOSP", 32, "none", r"\(Identity\) have no"),
        ("torchgeo:ViTSmall16_Weights.SENTINEL1_GRD_CLOSP", 64, "none", "a resize only"),
        # an input size the patch grid would crop
        ("torchgeo:ViTSmall14_DINOv2_Weights.SENTINEL1_GRD_SOFTCON", 64, "none", "use 56 or 70"),
        # calibration asked of a member whose input is not dB
        ("torchgeo:Swin_V2_B_Weights.SENTINEL1_SI_SATLAS", 64, "median", "dB-normalised"),
        ("torchgeo:NoSuch_Weights.X", 32, "none", r"torchgeo:<WeightsEnum>.<MEMBER>"),
    ],
)
def test_unsupported_members_are_refused_in_one_line(name, img_size, calibration, match):
    enum_name, _, member = name.removeprefix("torchgeo:").partition(".")
    if enum_name != "NoSuch_Weights":
        _member(enum_name, member)
    with pytest.raises(ConfigError, match=match) as err:
        build_backbone(name, img_size=img_size, input_calibration=calibration)
    assert "\n" not in str(err.value) and (name in str(err.value) or "NoSuch" in str(err.value))


def test_calibration_is_refused_for_a_backbone_without_one():
    with pytest.raises(ConfigError, match="has no input calibration"):
        build_backbone(
            "random", arch="irpe_vit_micro_patch8", img_size=32, input_calibration="median"
        )


def test_a_failed_download_is_one_line_naming_the_way_out(monkeypatch):
    weights = _member("ResNet50_Weights", "SENTINEL1_ALL_MOCO")

    def offline(self, *args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(type(weights), "get_state_dict", offline)
    with pytest.raises(WeightsError, match="could not download .* pass --weights PATH") as err:
        build_backbone(f"torchgeo:{weights}", img_size=32)
    assert "\n" not in str(err.value)
