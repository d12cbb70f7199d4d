"""Constructing backbones from an :class:`ArchSpec` and filling them from a state dict.

Every backbone exposes ``forward_features(x) -> (B, D)`` and ``num_features``: the iRPE ViT and
HiViT do natively, timm models are wrapped in :class:`TimmBackbone`. A model that expects another
input than the toolkit's one-channel [0, 1] batch is wrapped in :class:`AdaptedBackbone`, whose
:class:`InputAdapter` does the model-specific channel replication and normalisation.
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
from sarfewshot.models.hivit import HiViT
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


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Input adaptations by name: (channels the model takes, mean/std or None).
INPUT_ADAPTERS = {
    "grey3": (3, None),
    "grey3_imagenet": (3, (IMAGENET_MEAN, IMAGENET_STD)),
}


class InputAdapter(nn.Module):
    """The toolkit's grey batch ``(B, 1, S, S)`` in [0, 1] -> what a model was trained on.

    The grey channel is copied to every channel (a batch that already has that many channels is
    used as is), then normalised per channel when ``mean``/``std`` are given.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.channels, stats = INPUT_ADAPTERS[kind]
        self.normalise = stats is not None
        if stats is not None:
            shape = (1, self.channels, 1, 1)
            self.register_buffer("mean", torch.tensor(stats[0]).view(shape), persistent=False)
            self.register_buffer("std", torch.tensor(stats[1]).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, self.channels, -1, -1)
        if self.normalise:
            x = (x - self.mean) / self.std
        return x

    def describe(self) -> dict:
        """The adaptation as a record entry."""
        out = {"kind": self.kind, "channels": self.channels, "replicate": True}
        if self.normalise:
            out["mean"] = [round(float(v), 6) for v in self.mean.flatten()]
            out["std"] = [round(float(v), 6) for v in self.std.flatten()]
        return out


class AdaptedBackbone(nn.Module):
    """A backbone behind its :class:`InputAdapter`; same ``forward_features`` contract."""

    def __init__(self, backbone: nn.Module, adapter: InputAdapter) -> None:
        super().__init__()
        self.adapter = adapter
        self.backbone = backbone
        self.num_features = int(backbone.num_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Grey images ``(B, 1, S, S)`` -> features ``(B, D)``."""
        return self.backbone.forward_features(self.adapter(x))

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

    # fc_norm=False keeps the final norm on every token, then pools (I-JEPA); fc_norm=True pools
    # the un-normed tokens into a fresh LayerNorm (the MAE fine-tuning readout: SARMAE)
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
        fc_norm=arch.fc_norm,
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
        if arch.family == "hivit":
            return HiViT(
                img_size=img_size,
                patch_size=arch.patch_size,
                in_chans=arch.in_chans,
                embed_dim=arch.embed_dim,
                depths=arch.depths,
                num_heads=arch.num_heads,
                mlp_ratio=arch.mlp_ratio,
                stem_mlp_ratio=arch.stem_mlp_ratio,
                qkv_bias=arch.qkv_bias,
            )
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
    elif isinstance(target, HiViT):
        grid = int(round(target.absolute_pos_embed.shape[1] ** 0.5))
    prefix = int(getattr(target, "num_prefix_tokens", 1))
    adapted = adapt_state_dict(state_dict, in_chans=in_chans, grid=grid, num_prefix_tokens=prefix)
    return load_checked(target, adapted, path, allowed_missing, ignore_unexpected, sha256)
