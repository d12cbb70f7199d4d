"""Constructing backbones from an :class:`ArchSpec` and filling them from a state dict.

Every backbone exposes ``forward_features(x) -> (B, D)`` and ``num_features``: the iRPE ViT does
natively, timm models are wrapped in :class:`TimmBackbone`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import nn

from sarfewshot.errors import UnknownNameError
from sarfewshot.models.arch import ArchSpec
from sarfewshot.models.checkpoint import (
    RELEASE_EXTRA_KEYS,
    LoadReport,
    adapt_state_dict,
    load_checked,
)
from sarfewshot.models.vit_irpe import IRPEViT
from sarfewshot.utils.seeding import derive_seed, torch_generator


class TimmBackbone(nn.Module):
    """A timm model (no head) with the toolkit's ``forward_features(x) -> (B, D)`` contract.

    Features are timm's pre-logits: the class token after the final norm for ``global_pool=
    "token"``, the mean of the normed patch tokens for ``"avg"`` (I-JEPA encoders).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_features = int(model.num_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, S, S)`` -> features ``(B, D)``."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


@contextlib.contextmanager
def private_rng(seed: int) -> Iterator[None]:
    """Run a block with torch's global CPU generator set to ``seed`` and restored afterwards.

    Module constructors (ours and timm's) draw their default init from the global generator;
    forking it keeps those draws reproducible and leaves the caller's random state untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _create_named_timm(name: str, in_chans: int, img_size: int) -> nn.Module:
    import timm

    if not timm.list_models(name):
        raise UnknownNameError(
            f"unknown timm model {name!r}; see timm.list_models() (e.g. timm:vit_small_patch16_224)"
        )
    kwargs = {"pretrained": False, "in_chans": in_chans, "num_classes": 0}
    try:
        return timm.create_model(name, img_size=img_size, **kwargs)
    except TypeError:  # models without an img_size argument (CNNs) take any size
        return timm.create_model(name, **kwargs)


def _create_vit(arch: ArchSpec, img_size: int) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    # fc_norm=False keeps the final norm on every token, then pools: the MAE / I-JEPA readout
    return VisionTransformer(
        img_size=img_size,
        patch_size=arch.patch_size,
        in_chans=arch.in_chans,
        num_classes=0,
        embed_dim=arch.embed_dim,
        depth=arch.depth,
        num_heads=arch.num_heads,
        mlp_ratio=arch.mlp_ratio,
        qkv_bias=arch.qkv_bias,
        class_token=arch.class_token,
        global_pool=arch.global_pool,
        fc_norm=False,
    )


def construct(
    arch: ArchSpec, img_size: int, seed: int, key: str, drop_path_rate: float = 0.0
) -> nn.Module:
    """A freshly initialised backbone for ``arch``, reproducible from ``(seed, key)``.

    The iRPE ViT is initialised from a caller-owned generator; timm models from their own init
    run under a forked global generator seeded with the same derived seed.
    """
    derived = derive_seed(seed, "backbone", key)
    with private_rng(derived):
        if arch.family == "irpe":
            model = IRPEViT(img_size=img_size, drop_path_rate=drop_path_rate, **arch.irpe_kwargs())
            model.init_weights(torch_generator(seed, "backbone", key))
            return model
        if arch.family == "timm":
            return TimmBackbone(_create_named_timm(arch.timm_name or "", arch.in_chans, img_size))
        return TimmBackbone(_create_vit(arch, img_size))


def load_into(
    backbone: nn.Module,
    state_dict: dict[str, torch.Tensor],
    path: str,
    allowed_missing: Sequence[str] = (),
    ignore_unexpected: Sequence[str] = RELEASE_EXTRA_KEYS,
    sha256: str | None = None,
) -> LoadReport:
    """Adapt ``state_dict`` to ``backbone`` (channels, position grid) and load it, checked."""
    target = backbone.model if isinstance(backbone, TimmBackbone) else backbone
    in_chans = int(target.patch_embed.proj.weight.shape[1]) if hasattr(target, "patch_embed") else 1
    grid = None
    if "pos_embed" in target.state_dict():
        grid = int(target.patch_embed.grid_size[0])
    prefix = int(getattr(target, "num_prefix_tokens", 1))
    adapted = adapt_state_dict(state_dict, in_chans=in_chans, grid=grid, num_prefix_tokens=prefix)
    return load_checked(target, adapted, path, allowed_missing, ignore_unexpected, sha256)
