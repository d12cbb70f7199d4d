"""timm networks: plain ViTs read from files (MAE, LoMaR, FG-MAE, SARMAE, I-JEPA encoders) and
any named timm model (``timm:<model_name>``).

Two families: ``vit`` (a timm ``VisionTransformer`` built from an :class:`ArchSpec`; files with an
absolute ``pos_embed`` and no iRPE table) and ``timm`` (a named timm model, geometry fixed by its
name). Both are wrapped in :class:`TimmBackbone` for the ``forward_features(x) -> (B, D)``
contract.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sarfewshot.errors import ConfigError, UnknownNameError
from sarfewshot.models.arch import ArchSpec
from sarfewshot.models.family import family, name_prefix
from sarfewshot.models.geometry import common_geometry, standard_heads
from sarfewshot.models.registry import BackboneSpec

TIMM_PREFIX = "timm:"
# timm's ViT blocks: attn.qkv (fused query/key/value) and attn.proj (attention output)
VIT_LORA_TARGETS = ("qkv", "proj")


class TimmBackbone(nn.Module):
    """A timm model (no head) with the toolkit's ``forward_features(x) -> (B, D)`` contract.

    Features are timm's pre-logits: the class token after the final norm for ``global_pool=
    "token"``, the mean of the normed patch tokens for ``"avg"`` (I-JEPA encoders).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_features = int(model.num_features)

    @property
    def load_target(self) -> nn.Module:
        """The module whose state dict a checkpoint fills (timm's own key names)."""
        return self.model

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, S, S)`` -> features ``(B, D)``."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def infer_vit_arch(state_dict: Mapping[str, torch.Tensor], heads: int | None = None) -> dict:
    """Geometry of a plain ViT (absolute ``pos_embed``).

    Its weights do not reveal the head count, so it comes from ``heads`` or the standard widths
    (ViT-Ti/S/B/L/H: 192/3, 384/6, 768/12, 1024/16, 1280/16); any other width needs it given.
    """
    geo = common_geometry(state_dict)
    dim = geo["embed_dim"]
    full = (
        f"vit:patch={geo['patch_size']},dim={dim},depth={geo['depth']},heads=H"
        f"{'' if geo['class_token'] else ',cls=0'}"
    )
    geo["num_heads"] = standard_heads(dim, "a plain ViT", full, heads)
    geo["global_pool"] = "token" if geo["class_token"] else "avg"
    return geo


@family(
    "vit",
    label="a plain timm ViT (absolute pos_embed, no iRPE tables)",
    detect=lambda sd: "pos_embed" in sd,
    order=90,  # last: the most general rule
    infer=infer_vit_arch,
    fc_norm_option=True,
    record_family="timm",
    lora_targets=VIT_LORA_TARGETS,
)
def construct_vit(
    arch: ArchSpec, img_size: int, seed: int, key: str, drop_path_rate: float = 0.0
) -> nn.Module:
    """A timm ``VisionTransformer`` of ``arch`` (its own init under the caller's forked RNG)."""
    from timm.models.vision_transformer import VisionTransformer

    # fc_norm=False keeps the final norm on every token, then pools (I-JEPA); fc_norm=True pools
    # the un-normed tokens into a fresh LayerNorm (the MAE fine-tuning readout: SARMAE)
    return TimmBackbone(
        VisionTransformer(
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
    )


@family(
    "timm",
    label="a named timm model",
    own_readout=True,
    record_family="timm",
    lora_targets=VIT_LORA_TARGETS,
)
def construct_named(
    arch: ArchSpec, img_size: int, seed: int, key: str, drop_path_rate: float = 0.0
) -> nn.Module:
    """The timm model ``arch.timm_name`` (no head), at ``img_size`` when it takes one."""
    import timm

    name = arch.timm_name or ""
    if not timm.list_models(name):
        raise UnknownNameError(
            f"unknown timm model {name!r}; see timm.list_models() (e.g. timm:vit_small_patch16_224)"
        )
    kwargs = {"pretrained": False, "in_chans": arch.in_chans, "num_classes": 0}
    try:
        return TimmBackbone(timm.create_model(name, img_size=img_size, **kwargs))
    except TypeError:  # models without an img_size argument (CNNs) take any size
        return TimmBackbone(timm.create_model(name, **kwargs))


@name_prefix(TIMM_PREFIX)
def timm_spec(name: str) -> BackboneSpec:
    """The spec of ``timm:<model_name>``: random init unless ``--weights``."""
    model = name[len(TIMM_PREFIX) :].strip()
    if not model:
        raise ConfigError(
            f"backbone {name!r}: give a timm model name, e.g. timm:vit_small_patch16_224"
        )
    return BackboneSpec(
        name=f"{TIMM_PREFIX}{model}",
        description=f"timm {model} (in_chans=1, no head); random init unless --weights",
        family="timm",
        default_arch=f"timm:{model}",
        checkpoint_format="'model' / 'state_dict' / bare timm state dict; pos_embed interpolated",
        expected_file=None,
        needs_weights=False,
        accepts=("vit",),
        fixed_arch=True,
    )
