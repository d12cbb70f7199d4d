"""Family hook tables: the generic modules name no family, a family is one module, and the
checks that live in the generic path (file layouts, non-finite weights, interpolation notices)."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from sarfewshot.errors import WeightsError
from sarfewshot.models import build_backbone, lora_targets
from tests.models.modelkit import pretrain_extras, random_irpe_state, save_release_checkpoint

MODELS = Path(__file__).resolve().parents[2] / "sarfewshot" / "models"
FAMILY_NAMES = re.compile(r"saratrx|hivit|sarmae|ijepa|torchgeo", re.IGNORECASE)
GENERIC = ("checkpoint.py", "build.py", "family.py", "factory.py", "geometry.py", "registry.py")


@pytest.mark.parametrize("name", GENERIC)
def test_the_generic_modules_name_no_family(name):
    text = (MODELS / name).read_text()
    lines = enumerate(text.splitlines(), start=1)
    hits = [(n, m.group()) for n, line in lines if (m := FAMILY_NAMES.search(line))]
    assert hits == [], f"{name} names a family at (line, word) {hits}"


def test_no_models_module_is_over_450_lines_and_none_imports_an_upper_floor():
    for path in MODELS.rglob("*.py"):
        text = path.read_text()
        assert len(text.splitlines()) <= 450, path
        upper = re.findall(r"^\s*(?:from|import) sarfewshot\.(engine|results|cli)\b", text, re.M)
        assert upper == [], f"{path} imports sarfewshot.{upper}"


def _irpe_file(tmp_path: Path, name: str = "m.pth", **extra_tensors) -> Path:
    state = random_irpe_state(8, 32, 2, 2, 4.0, True, torch.Generator().manual_seed(0))
    extras = pretrain_extras(32, 16, torch.Generator().manual_seed(1))
    state.update(extra_tensors)
    return save_release_checkpoint(tmp_path / name, state, extras)


# --- I-JEPA-format files under other names, and `ijepa` on other files (issue: silent case 3)


@pytest.mark.parametrize("name", ["mae", "fgmae", "lomar"])
@pytest.mark.parametrize("arch", [None, "heads=2"])
def test_an_ijepa_file_under_another_name_is_refused(zoo, name, arch):
    path = zoo / "ijepa_ckpt.pth"
    with pytest.raises(WeightsError) as err:
        build_backbone(name, weights=path, img_size=64, arch=arch)
    text = str(err.value)
    assert str(path) in text and "ijepa format" in text and "--backbone ijepa" in text
    assert f"backbone {name!r} does not read" in text


def test_a_full_arch_builds_an_ijepa_file_under_another_name(zoo):
    arch = "vit:patch=16,dim=64,depth=2,heads=2,cls=0"
    net = build_backbone("mae", weights=zoo / "ijepa_ckpt.pth", img_size=64, arch=arch)
    assert net.backbone_info["arch_source"] == "arch" and net.backbone_info["name"] == "mae"


def _plain_vit_state(dim: int = 32, cls: bool = False) -> dict[str, torch.Tensor]:
    from timm.models.vision_transformer import VisionTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = VisionTransformer(
            img_size=32, patch_size=8, in_chans=1, num_classes=0, embed_dim=dim, depth=1,
            num_heads=2, class_token=cls, global_pool="token" if cls else "avg", fc_norm=False,
        )  # fmt: skip
    return vit.state_dict()


def test_the_toolkit_flat_ijepa_file_is_refused_under_mae(tmp_path):
    enc = _plain_vit_state()
    flat = {f"encoder.{k}": v for k, v in enc.items()}
    flat.update({f"target_encoder.{k}": v for k, v in enc.items()})
    flat["predictor.predictor_embed.weight"] = torch.zeros(4, 32)
    torch.save({"model": flat, "epoch": 3}, tmp_path / "flat.pth")
    with pytest.raises(WeightsError, match=r"flat\.pth: the file is in ijepa format"):
        build_backbone("mae", weights=tmp_path / "flat.pth", img_size=32, arch="heads=2")


@pytest.mark.parametrize("arch", [None, "heads=2", "vit:patch=8,dim=32,depth=1,heads=2,cls=0"])
def test_ijepa_refuses_a_file_without_the_ijepa_layout(tmp_path, arch):
    torch.save({"model": _plain_vit_state()}, tmp_path / "plain.pth")
    with pytest.raises(WeightsError) as err:
        build_backbone("ijepa", weights=tmp_path / "plain.pth", img_size=32, arch=arch)
    text = str(err.value)
    assert "plain.pth" in text and "reads only ijepa-format files" in text and "'model'" in text


def test_the_other_names_still_read_a_plain_vit_file(tmp_path):
    torch.save({"model": _plain_vit_state(cls=True)}, tmp_path / "plain.pth")
    net = build_backbone("mae", weights=tmp_path / "plain.pth", img_size=32, arch="heads=2")
    assert net.backbone_info["arch_source"] == "checkpoint"


# --- non-finite weights


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_file_and_the_first_bad_tensor(tmp_path, bad):
    state = random_irpe_state(8, 32, 2, 2, 4.0, True, torch.Generator().manual_seed(0))
    state["blocks.1.mlp.fc1.weight"][3, 4] = bad
    state["blocks.1.mlp.fc2.weight"][0, 0] = bad
    path = save_release_checkpoint(tmp_path / "diverged.pth", state, {})
    with pytest.raises(WeightsError) as err:
        build_backbone("sarjepa", weights=path, img_size=32)
    text = str(err.value)
    assert str(path) in text and "'blocks.1.mlp.fc1.weight'" in text and "fc2" not in text
    assert "1 non-finite value(s)" in text


def test_a_non_finite_tensor_the_backbone_does_not_load_is_no_reason_to_refuse(tmp_path):
    path = _irpe_file(tmp_path)
    ckpt = torch.load(path, weights_only=False)
    ckpt["model"]["module.decoder_pred.weight"][0, 0] = float("nan")  # a pretraining-only head
    torch.save(ckpt, path)
    net = build_backbone("sarjepa", weights=path, img_size=32)
    assert net.backbone_info["load"]["missing"] == 0


# --- position embeddings interpolated to another --img-size


def test_saratrx_position_embedding_interpolation_is_said_once(zoo, tmp_path, caplog):
    path = tmp_path / "saratrx_copy.pth"  # a path of its own: notices are said once per file
    shutil.copy(zoo / "saratrx_ckpt.pth", path)
    with caplog.at_level(logging.WARNING, logger="sarfewshot.models"):
        build_backbone("saratrx", weights=path, img_size=64, arch="heads=2")
        assert not [r for r in caplog.records if "interpolated" in r.getMessage()]
        for _ in range(2):
            build_backbone("saratrx", weights=path, img_size=32, arch="heads=2")
    said = [r.getMessage() for r in caplog.records if "interpolated" in r.getMessage()]
    assert len(said) == 1, said
    assert str(path) in said[0] and "absolute_pos_embed" in said[0]
    assert "from a 4x4 to a 2x2 token grid" in said[0] and "--img-size" in said[0]


def test_a_plain_vit_interpolation_is_said_too(zoo, tmp_path, caplog):
    path = tmp_path / "sarmae_copy.pth"
    shutil.copy(zoo / "sarmae_ckpt.pth", path)
    with caplog.at_level(logging.WARNING, logger="sarfewshot.models"):
        build_backbone("sarmae", weights=path, img_size=48, arch="heads=2")
    said = [r.getMessage() for r in caplog.records if "interpolated" in r.getMessage()]
    assert len(said) == 1 and "position embedding pos_embed" in said[0] and "3x3" in said[0]


# --- the family interface


def test_lora_targets_come_from_the_family_of_what_is_built():
    assert lora_targets("sarjepa") == ("qkv", "proj")
    assert lora_targets("saratrx") == ("qkv", "proj")
    assert lora_targets("mae", arch="vit_small_patch16") == ("qkv", "proj")


def test_a_hub_safetensors_file_loads_like_a_torch_file(tmp_path):
    from safetensors.torch import save_file

    state = random_irpe_state(8, 32, 2, 2, 4.0, True, torch.Generator().manual_seed(0))
    save_file(state, str(tmp_path / "m.safetensors"))
    torch_path = save_release_checkpoint(tmp_path / "m.pth", state, {})
    a = build_backbone("sarjepa", weights=tmp_path / "m.safetensors", img_size=32).eval()
    b = build_backbone("sarjepa", weights=torch_path, img_size=32).eval()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(a.forward_features(x), b.forward_features(x))


class _ToyNet(nn.Module):
    """A one-layer network for the worked example of adding a family."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.toy = nn.Linear(16, dim)
        self.num_features = dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.toy(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))


def test_adding_a_family_is_one_module(monkeypatch, tmp_path):
    """The docs' worked example: a family and its name, registered from one place."""
    from sarfewshot.models import family, registry
    from sarfewshot.models.arch import ArchSpec

    for table in (family.FAMILIES, registry.BACKBONE_REGISTRY):  # leave the real tables as they are
        monkeypatch.setattr(table, "_objects", dict(table._objects))
        monkeypatch.setattr(table, "_aliases", dict(table._aliases))

    @family.family(
        "toy",
        label="a toy network (toy.* keys)",
        detect=lambda sd: "toy.weight" in sd,
        infer=lambda sd, heads: {
            "embed_dim": sd["toy.weight"].shape[0],
            "num_heads": 1,
            "global_pool": "avg",
        },
        own_readout=True,
        lora_targets=("toy",),
    )
    def construct_toy(arch: ArchSpec, img_size: int, seed: int, key: str, dpr: float = 0.0):
        return _ToyNet(arch.embed_dim)

    @registry.zoo_backbone("toynet")
    def toynet_spec() -> registry.BackboneSpec:
        return registry.BackboneSpec(
            name="toynet", description="toy", family="toy", default_arch="irpe_vit_micro_patch8",
            checkpoint_format="{'model': toy state dict}", expected_file="toynet.pth",
            accepts=("toy",), feature="a linear map of the 4x4-pooled chip",
        )  # fmt: skip

    weights = {"toy.weight": torch.randn(8, 16), "toy.bias": torch.randn(8)}
    torch.save({"model": weights}, tmp_path / "toynet.pth")
    net = build_backbone("toynet", weights=tmp_path / "toynet.pth", img_size=32)
    assert net.backbone_info["family"] == "toy" and net.backbone_info["arch_source"] == "checkpoint"
    assert torch.equal(net.toy.weight, weights["toy.weight"])
    assert lora_targets("toynet", arch=net.backbone_info["arch"]) == ("toy",)
    with pytest.raises(WeightsError, match="expects a toy network"):
        build_backbone("toynet", weights=_irpe_file(tmp_path), img_size=32)
