"""DINOv3 (Siméoni et al., 2025): ViT-S/16 and ViT-B/16 distilled on LVD-1689M, and the ViT-L/16
pretrained on satellite imagery (SAT-493M), built by timm and read from timm's Hugging Face
``.safetensors`` files.

The feature is the one DINOv3's released linear classifier reads: the normed class token and
the mean of the normed patch tokens (its 4 register tokens excluded), concatenated (``2 x
width``). The grey chip is copied to 3 channels and normalised with the statistics of timm's
pretrained config: ImageNet's for the LVD-1689M models, the satellite set's own for SAT-493M.
Positions are RoPE (no position table), so any ``--img-size`` that is a multiple of 16 works.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sarfewshot.models.build import INPUT_ADAPTERS
from sarfewshot.models.family import Family, register_family
from sarfewshot.models.registry import BackboneSpec, zoo_backbone
from sarfewshot.models.zoo.timm import (
    BLOCK_ATTN_LORA_TARGETS,
    ClassAndPatchMean,
    hub_constructor,
    hub_spec,
)

# (patch, width, depth) -> timm's DINOv3 architecture (Eva: RoPE, 4 registers, LayerScale)
TIMM_MODELS = {
    (16, 384, 12): "vit_small_patch16_dinov3",
    (16, 768, 12): "vit_base_patch16_dinov3",
    (16, 1024, 24): "vit_large_patch16_dinov3",
}
FEATURE = (
    "class token + mean patch token (registers excluded) of the last block after the final "
    "norm, concatenated (DINOv3 linear classifier; 2 x width)"
)
#: timm's pretrained config of the sat493m file (tests compare): its own mean/std
SAT_INPUT = "grey3_dinov3_sat493m"
INPUT_ADAPTERS[SAT_INPUT] = (3, ((0.430, 0.411, 0.296), (0.213, 0.156, 0.143)))


def is_dinov3(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """A timm DINOv3 state dict: register tokens and no position table (RoPE)."""
    return "reg_token" in state_dict and "pos_embed" not in state_dict


register_family(
    Family(
        name="dinov3",
        label="a DINOv3 ViT (RoPE, register tokens: reg_token, no pos_embed)",
        detect=is_dinov3,
        order=80,
        own_readout=True,
        record_family="dinov3",
        lora_targets=BLOCK_ATTN_LORA_TARGETS,
        construct=hub_constructor(TIMM_MODELS, ClassAndPatchMean),
    )
)


def _spec(name: str, tag: str, arch: str, description: str, adapter: str) -> BackboneSpec:
    return hub_spec(
        name, "dinov3", tag, arch, description=description, input_adapter=adapter,
        feature=FEATURE, pooling="cls+avg",
    )  # fmt: skip


@zoo_backbone("dinov3_vits16")
def dinov3_vits16_spec() -> BackboneSpec:
    """DINOv3 ViT-S/16 (LVD-1689M)."""
    arch = "dinov3:patch=16,dim=384,depth=12,heads=6,chans=3,qkv_bias=0"
    tag = "vit_small_patch16_dinov3.lvd1689m"
    return _spec("dinov3_vits16", tag, arch, "DINOv3 ViT-S/16 (LVD-1689M)", "grey3_imagenet")


@zoo_backbone("dinov3_vitb16")
def dinov3_vitb16_spec() -> BackboneSpec:
    """DINOv3 ViT-B/16 (LVD-1689M)."""
    arch = "dinov3:patch=16,dim=768,depth=12,heads=12,chans=3,qkv_bias=0"
    tag = "vit_base_patch16_dinov3.lvd1689m"
    return _spec("dinov3_vitb16", tag, arch, "DINOv3 ViT-B/16 (LVD-1689M)", "grey3_imagenet")


@zoo_backbone("dinov3_vitl16_sat")
def dinov3_vitl16_sat_spec() -> BackboneSpec:
    """DINOv3 ViT-L/16 pretrained on satellite images (SAT-493M)."""
    arch = "dinov3:patch=16,dim=1024,depth=24,heads=16,chans=3,qkv_bias=0"
    tag = "vit_large_patch16_dinov3.sat493m"
    description = "DINOv3 ViT-L/16 (SAT-493M, satellite)"
    return _spec("dinov3_vitl16_sat", tag, arch, description, SAT_INPUT)
