"""SARMAE (noise-aware MAE with optical alignment, SAR-1M): its pretraining file and its name.

A SARMAE pretraining file nests the MAE's ViT under ``sar_encoder.`` beside the optical encoder
and the alignment head. The family unwraps the ``sar_encoder.`` keys (as SARMAE's own
``load_sar_pretrained`` does) and drops the rest; the ViT itself is built and read by the
plain-ViT family of :mod:`~sarfewshot.models.zoo.timm`. ViT-B or ViT-L geometry is inferred.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sarfewshot.models.checkpoint import MAE_EXTRA_KEYS
from sarfewshot.models.family import family
from sarfewshot.models.hub import WeightSource
from sarfewshot.models.registry import BackboneSpec, zoo_backbone
from sarfewshot.models.zoo.timm import infer_vit_arch

# SARMAE's pretraining file nests the MAE under this prefix beside optical / alignment modules
SARMAE_PREFIX = "sar_encoder."
SARMAE_RULE = (
    "pretraining file {'model': {sar_encoder.*, optical_encoder.*, sar_alignment_ffn.*}, ...}:"
    " the sar_encoder.* ViT loaded (as SARMAE's load_sar_pretrained does), the rest dropped;"
    " ViT-B or ViT-L geometry inferred; norm.*, mask_token, decoder_* ignored"
)


@family(
    "sarmae",
    role="unwrap",
    label="a SARMAE pretraining file (the ViT nested under sar_encoder.)",
    detect=lambda sd: f"{SARMAE_PREFIX}pos_embed" in sd,
    order=20,
    infer=infer_vit_arch,
    builds="vit",
)
def unwrap_sarmae(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ViT of a SARMAE file: the ``sar_encoder.`` keys without the prefix (others dropped)."""
    n = len(SARMAE_PREFIX)
    return {k[n:]: v for k, v in state_dict.items() if k.startswith(SARMAE_PREFIX)}


@zoo_backbone("sarmae")
def sarmae_spec() -> BackboneSpec:
    """SARMAE's ViT: the mean patch token (class token excluded) into a fresh ``fc_norm``."""
    return BackboneSpec(
        name="sarmae",
        description="SARMAE: noise-aware MAE with optical alignment (SAR-1M); ViT-B or ViT-L",
        family="timm",
        default_arch="vit_base_patch16",
        checkpoint_format=SARMAE_RULE,
        expected_file="sarmae.pth",
        pooling="avg",
        allowed_missing=("fc_norm.*",),
        ignore_unexpected=MAE_EXTRA_KEYS,
        accepts=("sarmae",),
        input_adapter="grey3",
        fc_norm=True,
        feature="fc_norm (fresh) of the mean patch token, class token excluded (main_finetune)",
        sources=(
            WeightSource("hf", "Wenquandan777/SARMAE", "SARMAE_vitb_checkpoint-last", note="ViT-B"),
            WeightSource("hf", "Wenquandan777/SARMAE", "SARMAE_vitl_checkpoint-last", note="ViT-L"),
            WeightSource("baidu", "https://pan.baidu.com/s/1DOsZolLZ--gMuNUgUXeyVg?pwd=0717"),
        ),
    )
