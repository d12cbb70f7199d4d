"""Test helpers for the hub-named models (DINOv2, DINOv3, PE-Core): random weights of the real
timm architecture saved as ``model.safetensors`` in a local Hugging Face cache, timm's own
reference forward, and an offline ``sarfewshot eval`` over a few synthetic chips.

Nothing here reaches the network: the cache holds the file at the path ``hf://timm/<tag>/
model.safetensors`` resolves to, and every run sets ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from sarfewshot.utils.io import sha256_file

REV = "5f1e0b9c2d3a4e6f708192a3b4c5d6e7f8091a2b"  # any 40 hex digits: the cached revision


def random_timm(timm_name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """timm's ``timm_name`` (real architecture, no pretrained weights) with random weights.

    LayerScale gammas (timm inits them at 1e-5, which hides the blocks) are drawn in [0.5, 1.5]
    so that every block shapes the features the comparison checks.
    """
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(timm_name, pretrained=False, **kwargs)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "gamma" in name:
                    param.uniform_(0.5, 1.5)
    return model.eval()


def cached_random(root: Path, timm_arch: str, tag: str, seed: int) -> tuple[Path, Path]:
    """:func:`random_timm` weights of ``timm_arch`` saved in a hub cache as ``timm/<tag>``."""
    return hf_cache(root, tag, random_timm(timm_arch, seed=seed))


def features_and_reference(
    name: str, timm_arch: str, tag: str, path: Path, img_size: int, reference
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """Backbone ``name`` built by the toolkit (weights from the hub cache), its features of a
    random grey batch, and ``reference(timm model, 3-channel input)`` of timm's own pretrained
    path on the same file and input."""
    from sarfewshot.models import build_backbone

    net = build_backbone(name, img_size=img_size).eval()
    ref = timm_pretrained(timm_arch, path, img_size)
    grey = torch.rand(3, 1, img_size, img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return net, net.forward_features(grey), reference(ref, timm_input(grey, tag))


def hf_cache(root: Path, tag: str, model: torch.nn.Module) -> tuple[Path, Path]:
    """Save ``model``'s weights as ``timm/<tag>/model.safetensors`` in a Hugging Face cache.

    Returns the cache folder (``HF_HUB_CACHE``) and the saved file.
    """
    from safetensors.torch import save_file

    base = root / "hf_cache" / f"models--timm--{tag}"
    target = base / "snapshots" / REV / "model.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(target))
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text(REV)
    return root / "hf_cache", target


def offline(monkeypatch, cache: Path) -> None:
    """Point huggingface_hub (already imported) at ``cache``, offline."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("SARFEWSHOT_WEIGHTS", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


def timm_pretrained(timm_name: str, path: Path, img_size: int, **kwargs) -> torch.nn.Module:
    """timm's own pretrained path on the cached file: its loader, its resampling to the size."""
    import timm

    overlay = {"file": str(path)}
    model = timm.create_model(
        timm_name, pretrained=True, img_size=img_size, pretrained_cfg_overlay=overlay, **kwargs
    )
    return model.eval()


def timm_input(grey: torch.Tensor, tag: str) -> torch.Tensor:
    """The grey batch copied to 3 channels and normalised with timm's pretrained config."""
    import timm

    cfg = timm.models.get_pretrained_cfg(tag).to_dict()
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    return (grey.expand(-1, 3, -1, -1) - mean) / std


def class_and_patch_mean(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's own heads, pooled once by class token and once by patch mean, concatenated."""
    out = []
    for pool in ("token", "avg"):
        model.reset_classifier(0, global_pool=pool)
        out.append(model(x))
    return torch.cat(out, dim=1)


def same_shapes(ours: torch.nn.Module, timm_name: str, **kwargs) -> bool:
    """Whether ``ours`` has the state-dict keys and shapes of timm's ``timm_name``."""
    import timm

    with torch.device("meta"):  # shapes only: no memory, no init time for ViT-B/L
        ref = timm.create_model(timm_name, pretrained=False, **kwargs)
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    return shapes == {k: tuple(v.shape) for k, v in ref.state_dict().items()}


def build_meta(name: str, img_size: int = 224) -> torch.nn.Module:
    """The family's network of backbone ``name``'s geometry, on the meta device (shapes only)."""
    from sarfewshot.models.arch import parse_arch
    from sarfewshot.models.family import get_family
    from sarfewshot.models.registry import get_backbone_spec

    spec = get_backbone_spec(name)
    arch = parse_arch(spec.default_arch)
    with torch.device("meta"):
        return get_family(arch.family).construct(arch, img_size, 0, spec.name)


def eval_offline(tmp_path: Path, cache: Path, backbone: str, img_size: int) -> dict:
    """``sarfewshot eval --backbone NAME`` (no --weights) offline; the records, by protocol."""
    from sarfewshot.datasets.synthetic import generate_synthetic
    from sarfewshot.results.records import record_files

    root = generate_synthetic(
        tmp_path / "synth", n_train_per_class=2, n_test_per_class=1, size=48,
        classes=("tank", "apc", "truck"), progress_bar=False,
    )  # fmt: skip
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    for key in ("HF_HOME", "SARFEWSHOT_WEIGHTS"):
        env.pop(key, None)
    env["SARFEWSHOT_NO_PROGRESS"] = "1"
    cmd = [
        sys.executable, "-m", "sarfewshot", "eval", "--backbone", backbone,
        "--img-size", str(img_size), "--dataset", "synthetic", "--root", str(root),
        "--shots", "1", "--protocol", "knn,linear", "--seeds", "1",
        "--output", str(tmp_path / "runs"), "INPUT.SAR.CROP", "0", "OPTIM.MAX_EPOCH", "2",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    records = [json.loads(p.read_text()) for p in record_files(tmp_path / "runs")]
    return {r["protocol"]: r for r in records}


def check_record(record: dict, uri: str, path: Path, family: str, feature: str) -> None:
    """A record names the hub file, its sha256, the family, input adaptation and feature."""
    section = record["backbone"]
    assert section["weights"] == uri
    assert section["weights_sha256"] == sha256_file(path)
    assert section["arch"].startswith(f"{family}:") and section["arch_source"] == "name"
    assert section["feature"] == feature
    assert section["input"]["channels"] == 3 and section["input"]["replicate"] is True
