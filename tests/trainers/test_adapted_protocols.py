"""lora and partial: which layers train, fresh adapters, frozen base weights, counts, errors."""

from __future__ import annotations

import sys

import pytest
import torch

from sarfewshot.engine.protocol import CellContext
from sarfewshot.engine.registry import get_trainer
from sarfewshot.errors import ConfigError
from sarfewshot.models import adapt
from sarfewshot.models.build import AdaptedBackbone, InputAdapter
from sarfewshot.models.checkpoint import extract_state_dict, safe_load
from sarfewshot.models.factory import build_backbone
from tests.trainers.test_trained_protocols import ARCH, _cfg, _data

#: One small network per family LoRA must work for: the iRPE ViT, HiViT, a plain timm ViT and
#: a named timm model (the path of timm-built natural-image models).
FAMILIES = {
    "irpe": (ARCH, 32),
    "hivit": ("hivit:patch=16,dim=64,depths=1-1-2,heads=2", 32),
    "vit": ("vit:patch=8,dim=64,depth=2,heads=2", 32),
}


def _family_backbone(family: str) -> torch.nn.Module:
    if family == "timm":
        return build_backbone("timm:test_vit", seed=0).eval()  # timm's 160 px test ViT
    if family == "grey3":  # a 3-channel model behind its input adapter (natural-image models)
        net = build_backbone(
            "random", arch="vit:patch=8,dim=64,depth=2,heads=2,chans=3", img_size=32
        )
        wrapped = AdaptedBackbone(net, InputAdapter("grey3_imagenet")).eval()
        wrapped.backbone_info = net.backbone_info
        return wrapped
    arch, size = FAMILIES[family]
    return build_backbone("random", arch=arch, img_size=size, seed=0).eval()


@pytest.mark.parametrize("family", [*FAMILIES, "timm", "grey3"])
def test_fresh_adapters_keep_the_frozen_features(family):
    backbone = _family_backbone(family)
    size = int(backbone.backbone_info["img_size"])
    x = torch.rand(3, 1, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        frozen = backbone.forward_features(x)
    targets = adapt.default_lora_targets(backbone)
    assert targets == ("qkv", "proj")
    wrapped = adapt.add_lora(backbone, 8, 16.0, 0.1, targets, seed=1)
    # only the attention projections (a patch embedding's "proj" convolution is not linear)
    assert wrapped and all(n.endswith(("attn.qkv", "attn.proj")) for n in wrapped)
    with torch.no_grad():
        assert torch.equal(backbone.forward_features(x), frozen)
    trainable = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert trainable and all(adapt.is_lora_parameter(n) for n in trainable)
    assert len(trainable) == 2 * len(wrapped)  # A and B per wrapped layer


def test_adapters_are_seeded_and_leave_the_global_generator_alone():
    first, second = _family_backbone("irpe"), _family_backbone("irpe")
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    adapt.add_lora(first, 4, 8.0, 0.0, ("qkv",), seed=3)
    assert torch.equal(torch.rand(1), before)
    adapt.add_lora(second, 4, 8.0, 0.0, ("qkv",), seed=3)
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _file_backbone(tmp_path):
    """A backbone read from a weights file, and that file's state dict."""
    source = build_backbone("random", arch=ARCH, img_size=32, seed=7)
    path = tmp_path / "sarjepa.pth"
    torch.save({"model": source.state_dict()}, path)
    backbone = build_backbone("sarjepa", weights=path, img_size=32).eval()
    return backbone, extract_state_dict(safe_load(path), ("model",), source=path)


def _run(protocol, backbone, opts=()):
    """Run one cell on toy images; return its metrics and the backbone the cell trained."""
    built = []

    def factory():
        import copy

        built.append(copy.deepcopy(backbone))
        return built[-1]

    cfg = _cfg(protocol, epochs=4, opts=("DATALOADER.TRAIN_X.BATCH_SIZE", "10", *opts))
    out = get_trainer(protocol).run_cell(
        cfg, _data(backbone, features=False), CellContext(device="cpu", backbone_factory=factory)
    )
    return out.metrics, built[0]


def test_lora_cell_leaves_the_base_weights_bit_identical_to_the_file(tmp_path):
    backbone, file_sd = _file_backbone(tmp_path)
    metrics, trained = _run("lora", backbone)
    base = adapt.base_state_dict(trained)
    assert set(file_sd) <= set(base)
    assert all(torch.equal(base[k], file_sd[k]) for k in file_sd)
    moved = [p for n, p in trained.named_parameters() if ".lora_B." in n]
    assert moved and any(bool(p.abs().sum() > 0) for p in moved)  # the adapters did train
    # micro ViT: 2 blocks x (qkv 64->192 + proj 64->64), rank 8: 8*(64+192) + 8*(64+64) each
    adapters, head = 2 * (8 * 256 + 8 * 128), 64 * 3 + 3
    assert metrics["lora_layers"] == 4
    assert metrics["trainable_params"] == adapters + head
    own = sum(v.numel() for v in file_sd.values())
    assert metrics["total_params"] == own + adapters + head


@pytest.mark.parametrize("protocol", ["lora", "partial"])
def test_release_file_weights_stay_bit_identical(vectors_dir, protocol):
    # the release's pretraining format ('module.' prefixes, decoder and predictor keys)
    path = vectors_dir / "irpe_vit_tiny_pretrain_ckpt.pth"
    backbone = build_backbone("sarjepa", weights=path, img_size=32).eval()
    file_sd = extract_state_dict(safe_load(path), ("model",), source=path)
    metrics, trained = _run(protocol, backbone, ("TRAINER.PARTIAL.BLOCKS", "1"))
    base = adapt.base_state_dict(trained)
    frozen = {k for k, p in trained.named_parameters() if not p.requires_grad}
    frozen = {k.replace(".base_layer.", ".") for k in frozen}
    assert frozen <= set(file_sd)  # every frozen weight came from the file
    assert all(torch.equal(base[k], file_sd[k]) for k in frozen)
    assert metrics["total_params"] > metrics["trainable_params"] > 0


def test_partial_cell_trains_only_the_last_blocks_and_final_norm(tmp_path):
    backbone, file_sd = _file_backbone(tmp_path)
    metrics, trained = _run("partial", backbone, ("TRAINER.PARTIAL.BLOCKS", "1"))
    after = trained.state_dict()
    changed = {k for k in file_sd if not torch.equal(after[k], file_sd[k])}
    assert changed and all(k.startswith(("blocks.1.", "norm.")) for k in changed)
    trainable = {n for n, p in trained.named_parameters() if p.requires_grad}
    assert trainable == {
        k for k, _ in trained.named_parameters() if k.startswith(("blocks.1.", "norm."))
    }
    block = sum(p.numel() for p in trained.blocks[1].parameters())
    norm = sum(p.numel() for p in trained.norm.parameters())
    assert metrics["trainable_params"] == block + norm + 64 * 3 + 3
    assert metrics["total_params"] == sum(v.numel() for v in file_sd.values()) + 64 * 3 + 3
    assert metrics["partial_blocks"] == 1


def test_partial_finds_the_blocks_of_each_family():
    hivit = _family_backbone("hivit")
    picked = adapt.last_blocks(hivit, 2, "KEY")
    assert list(picked) == ["blocks.6", "blocks.7", "fc_norm"]  # the main-stage blocks
    assert all(hasattr(picked[n], "attn") for n in ("blocks.6", "blocks.7"))
    vit = _family_backbone("vit")
    assert list(adapt.last_blocks(vit, 1, "KEY")) == ["model.blocks.1", "model.norm"]
    grey3 = _family_backbone("grey3")
    assert list(adapt.last_blocks(grey3, 1, "KEY")) == [
        "backbone.model.blocks.1",
        "backbone.model.norm",
    ]
    with pytest.raises(ConfigError, match=r"TRAINER\.PARTIAL\.BLOCKS 3: .* has 2 blocks"):
        adapt.last_blocks(vit, 3, "TRAINER.PARTIAL.BLOCKS")


def test_bad_lora_settings_name_their_key(monkeypatch):
    backbone = _family_backbone("irpe")
    with pytest.raises(ConfigError, match=r"TRAINER\.LORA\.TARGETS \['fc9'\].*no linear layer"):
        get_trainer("lora").adapt(_cfg("lora", opts=("TRAINER.LORA.TARGETS", "('fc9',)")), backbone)
    with pytest.raises(ConfigError, match=r"TRAINER\.LORA: RANK 0"):
        get_trainer("lora").adapt(_cfg("lora", opts=("TRAINER.LORA.RANK", "0")), backbone)
    monkeypatch.setitem(sys.modules, "peft", None)  # peft not installed
    with pytest.raises(ConfigError, match=r"pip install 'sarfewshot\[adapters\]'"):
        get_trainer("lora").adapt(_cfg("lora"), _family_backbone("irpe"))


def test_targets_key_overrides_the_family():
    backbone = _family_backbone("irpe")
    cfg = _cfg("lora", opts=("TRAINER.LORA.TARGETS", "('fc1', 'fc2')"))
    assert get_trainer("lora").adapt(cfg, backbone) == {"lora_layers": 4}
    wrapped = {n.rsplit(".", 3)[0] for n, p in backbone.named_parameters() if p.requires_grad}
    assert wrapped == {
        "blocks.0.mlp.fc1",
        "blocks.0.mlp.fc2",
        "blocks.1.mlp.fc1",
        "blocks.1.mlp.fc2",
    }


def test_a_lora_cell_is_reproducible_on_a_cpu():
    backbone = _family_backbone("irpe")
    first, _ = _run("lora", backbone, ("TRAINER.LORA.DROPOUT", "0.5"))  # dropout draws too
    second, _ = _run("lora", backbone, ("TRAINER.LORA.DROPOUT", "0.5"))
    assert first["final_train_loss"] == second["final_train_loss"]
    assert first["confusion_matrix"] == second["confusion_matrix"]


def test_lora_without_peft_is_refused_before_any_cell_runs(tmp_path, monkeypatch, capsys):
    """Not after the frozen-feature cells ran: one line naming the extra, and no record."""
    from sarfewshot.cli.main import main
    from tests import fakes

    fakes.make_mstar_soc_tree(tmp_path / "data", n_train=2, n_test=1)
    monkeypatch.setitem(sys.modules, "peft", None)  # peft not installed
    out = tmp_path / "runs"
    args = ["eval", "--backbone", "random", "--arch", ARCH, "--img-size", "32", "--seeds", "1"]
    args += ["--dataset", "mstar", "--root", str(tmp_path / "data"), "--shots", "1"]
    args += ["--protocol", "knn,lora", "--output", str(out), "INPUT.SAR.CROP", "0"]
    assert main(args) == 2
    assert "pip install 'sarfewshot[adapters]'" in capsys.readouterr().err
    assert not list(out.rglob("records/*.json"))
