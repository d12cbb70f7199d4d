"""Checkpoint loading: other geometries with no flags, safety, key rules, channel summing."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from sarfewshot.errors import WeightsError
from sarfewshot.models import build_backbone, safe_load
from sarfewshot.models.checkpoint import (
    _unpickling_reason,
    extract_state_dict,
    strip_prefixes,
)
from sarfewshot.models.vit_irpe import IRPEViT
from sarfewshot.models.zoo.release import infer_irpe_arch
from tests.models.modelkit import (
    pretrain_extras,
    random_irpe_state,
    reference_features,
    save_release_checkpoint,
)

GEOMETRIES = [
    # patch, dim, depth, heads, mlp ratio, class token, image size
    (8, 48, 3, 4, 2.0, True, 40),
    (4, 32, 2, 2, 4.0, False, 24),
]


@pytest.mark.parametrize("patch,dim,depth,heads,mlp,cls,size", GEOMETRIES)
def test_other_geometry_loads_without_flags(tmp_path, patch, dim, depth, heads, mlp, cls, size):
    gen = torch.Generator().manual_seed(dim)
    state = random_irpe_state(patch, dim, depth, heads, mlp, cls, gen)
    extras = pretrain_extras(dim, (size // patch) ** 2, gen)
    path = save_release_checkpoint(tmp_path / "other.pth", state, extras)

    net = build_backbone("sarjepa", weights=path, img_size=size).eval()
    x = torch.rand(2, 1, size, size, generator=gen)
    with torch.inference_mode():
        got = net.forward_features(x)
    want = reference_features(state, x, heads=heads, cls=cls)
    assert got.shape == (2, dim) and net.num_features == dim
    assert (got - want).abs().max().item() < 1e-4
    assert net.backbone_info["load"] == {
        "loaded": len(state),
        "missing": 0,
        "unexpected": len(extras),
        "ignored": len(extras),
    }
    assert infer_irpe_arch(state)["num_heads"] == heads
    assert infer_irpe_arch(state)["mlp_ratio"] == mlp


class _Payload:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_unsafe_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, bad)
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps({"extra": _Payload(marker)}, protocol=2))
    for path in (bad, raw):
        with pytest.raises(WeightsError, match="refusing to load .*arbitrary unpickling") as err:
            safe_load(path)
        assert str(path) in str(err.value)
        with pytest.raises(WeightsError, match="refusing"):
            build_backbone("sarjepa", weights=path)
    assert not marker.exists()


class _SystemPayload:
    """Pickles as the global ``posix.system`` (``os.system``): would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refusal_names_the_disallowed_global(tmp_path):
    marker = tmp_path / "ran"
    saved, raw = tmp_path / "saved.pth", tmp_path / "raw.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "args": _SystemPayload(marker)}, saved)
    raw.write_bytes(pickle.dumps({"x": _SystemPayload(marker)}, protocol=2))
    for path in (saved, raw):
        with pytest.raises(WeightsError) as err:
            safe_load(path)
        text = str(err.value)
        assert str(path) in text
        assert re.search(r"disallowed global (posix|os)\.system", text), text
        assert "Weights only load failed" not in text  # not torch's generic first line
    assert not marker.exists()


def test_unpickling_reason_reads_both_wordings():
    blocked = pickle.UnpicklingError(
        "Weights only load failed. In PyTorch 2.6, we changed the default.\n\n\n"
        "Trying to load unsupported GLOBAL posix.system whose module posix is blocked.\n\n"
        "Check the documentation of torch.load"
    )
    assert _unpickling_reason(blocked) == (
        "Trying to load unsupported GLOBAL posix.system whose module posix is blocked",
        "posix.system",
    )
    unknown = pickle.UnpicklingError(
        "Weights only load failed. This file can still be loaded.\n\t(1) In PyTorch 2.6...\n"
        "\tWeightsUnpickler error: Unsupported global: GLOBAL pkg.Thing was not an allowed global"
        " by default. Please use `torch.serialization.add_safe_globals([pkg.Thing])`.\n\nCheck"
    )
    assert _unpickling_reason(unknown) == (
        "GLOBAL pkg.Thing was not an allowed global by default",
        "pkg.Thing",
    )
    odd = pickle.UnpicklingError("Weights only load failed.\nsomething new\n  entirely")
    assert _unpickling_reason(odd) == ("Weights only load failed. something new entirely", None)


def test_missing_and_corrupt_files(tmp_path):
    missing = tmp_path / "nope" / "sarjepa.pth"
    with pytest.raises(WeightsError) as err:
        safe_load(missing)
    assert str(missing) in str(err.value)
    assert "github.com/waterdisappear/SAR-JEPA" in str(err.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="refusing to load .*not a weights-only"):
        safe_load(junk)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match=f"cannot read {empty}"):
        safe_load(empty)


def test_missing_backbone_key_is_an_error(tmp_path):
    gen = torch.Generator().manual_seed(0)
    state = random_irpe_state(8, 32, 2, 2, 4.0, True, gen)
    del state["blocks.1.mlp.fc2.bias"]
    path = save_release_checkpoint(tmp_path / "m.pth", state, {})
    with pytest.raises(WeightsError, match=r"lacks 1 backbone key.*blocks\.1\.mlp\.fc2\.bias"):
        build_backbone("sarjepa", weights=path, img_size=32)


def test_wrong_arch_is_an_error(tmp_path):
    gen = torch.Generator().manual_seed(0)
    state = random_irpe_state(8, 64, 3, 2, 4.0, True, gen)
    path = save_release_checkpoint(tmp_path / "m.pth", state, {})
    # the micro preset has 2 blocks: blocks.2.* must not be dropped silently
    with pytest.raises(WeightsError, match=r"blocks\.2\."):
        build_backbone("sarjepa", weights=path, arch="irpe_vit_micro_patch8", img_size=32)
    with pytest.raises(WeightsError, match="shape mismatch"):
        build_backbone("sarjepa", weights=path, arch="irpe:patch=8,dim=32,depth=3,heads=2")


def test_three_channel_patch_embed_is_summed(tmp_path):
    gen = torch.Generator().manual_seed(5)
    state = random_irpe_state(8, 32, 2, 2, 4.0, True, gen, in_chans=3)
    torch.save({"state_dict": {"backbone." + k: v for k, v in state.items()}}, tmp_path / "c3.pth")
    net = build_backbone("sarjepa", weights=tmp_path / "c3.pth", img_size=32).eval()
    assert net.patch_embed.proj.weight.shape[1] == 1
    rgb = IRPEViT(patch_size=8, in_chans=3, embed_dim=32, depth=2, num_heads=2).eval()
    rgb.load_state_dict(state)
    x = torch.rand(2, 1, 32, 32, generator=gen)
    with torch.inference_mode():
        diff = (net(x) - rgb(x.expand(-1, 3, -1, -1))).abs().max().item()
    assert diff < 1e-5


def test_layouts_and_prefixes():
    w = torch.zeros(1)
    assert list(extract_state_dict({"blocks.0.x": w})) == ["blocks.0.x"]
    nested = {"epoch": 3, "model": {"module.encoder.norm.weight": w}}
    assert list(extract_state_dict(nested)) == ["norm.weight"]
    both = {"encoder": {"module.a": w}, "target_encoder": {"module.b": w}}
    assert list(extract_state_dict(both)) == ["a"]
    with pytest.raises(WeightsError, match="no state dict found"):
        extract_state_dict({"epoch": 1, "optimizer": {"lr": 0.1}}, source="x.pth")
    with pytest.raises(WeightsError, match="collide"):
        strip_prefixes({"module.a": w, "a": w})
