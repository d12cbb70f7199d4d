"""DINOv2 (Oquab et al., TMLR 2024): ViT-S/14 and ViT-B/14 pretrained on LVD-142M, built by timm
and read from timm's Hugging Face ``.safetensors`` files.

The feature is the one DINOv2's linear evaluation and its released ImageNet linear heads read:
the class token and the mean of the patch tokens of the last block, both after the final norm,
concatenated (``2 x width``). The grey chip is copied to 3 channels and normalised with the
ImageNet statistics of timm's pretrained config. The files hold a 37 x 37 position grid (518
px); timm resamples it to each input's grid (``dynamic_img_size``), so any ``--img-size`` that
is a multiple of 14 works (224 = 16 x 14) and others are refused.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sarfewshot.models.family import Family, register_family
from sarfewshot.models.registry import BackboneSpec, zoo_backbone
from sarfewshot.models.zoo.timm import (
    BLOCK_ATTN_LORA_TARGETS,
    ClassAndPatchMean,
    hub_constructor,
    hub_spec,
)

# (patch, width, depth) -> timm's DINOv2 architecture (LayerScale blocks, 518 px grid)
TIMM_MODELS = {(14, 384, 12): "vit_small_patch14_dinov2", (14, 768, 12): "vit_base_patch14_dinov2"}
FEATURE = (
    "class token + mean patch token of the last block after the final norm, concatenated "
    "(DINOv2 linear evaluation; 2 x width)"
)
#: timm's pretrained config of the lvd142m files (tests compare): ImageNet mean/std
INPUT = "grey3_imagenet"


def is_dinov2(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """A timm DINOv2 state dict: absolute ``pos_embed``, LayerScale gammas, no registers."""
    return (
        "pos_embed" in state_dict
        and "blocks.0.ls1.gamma" in state_dict
        and "reg_token" not in state_dict
    )


register_family(
    Family(
        name="dinov2",
        label="a DINOv2 ViT (absolute pos_embed, LayerScale blocks.N.ls1.gamma)",
        detect=is_dinov2,
        order=80,  # before the plain-ViT catch-all, which also has a pos_embed
        own_readout=True,
        record_family="dinov2",
        lora_targets=BLOCK_ATTN_LORA_TARGETS,
        construct=hub_constructor(TIMM_MODELS, ClassAndPatchMean),
    )
)


def _spec(name: str, tag: str, arch: str, description: str) -> BackboneSpec:
    return hub_spec(
        name, "dinov2", tag, arch, description=description, input_adapter=INPUT,
        feature=FEATURE, pooling="cls+avg",
    )  # fmt: skip


@zoo_backbone("dinov2_vits14")
def dinov2_vits14_spec() -> BackboneSpec:
    """DINOv2 ViT-S/14 (LVD-142M)."""
    arch = "dinov2:patch=14,dim=384,depth=12,heads=6,chans=3"
    return _spec("dinov2_vits14", "vit_small_patch14_dinov2.lvd142m", arch, "DINOv2 ViT-S/14")


@zoo_backbone("dinov2_vitb14")
def dinov2_vitb14_spec() -> BackboneSpec:
    """DINOv2 ViT-B/14 (LVD-142M)."""
    arch = "dinov2:patch=14,dim=768,depth=12,heads=12,chans=3"
    return _spec("dinov2_vitb14", "vit_base_patch14_dinov2.lvd142m", arch, "DINOv2 ViT-B/14")
