"""PE-Core (Perception Encoder, Bolya et al., 2025): the CLIP-trained ViT-B/16 at 224 px, built
by timm and read from timm's Hugging Face ``.safetensors`` file.

The feature is PE-Core's image embedding, what its zero-shot and retrieval code compares: the
tokens after the final norm, pooled by the attention-pooling head and projected to the 1024-d
joint space (timm's full forward; PE's ``encode_image`` before its L2 normalisation, which a
linear head or cosine kNN does not need). The grey chip is copied to 3 channels and normalised
with the 0.5 / 0.5 statistics of timm's pretrained config. The file holds a 14 x 14 position
grid and RoPE referenced to it; timm resamples both to each input's grid, so any
``--img-size`` that is a multiple of 16 works (224 is the training size).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sarfewshot.models.build import INPUT_ADAPTERS
from sarfewshot.models.family import Family, register_family
from sarfewshot.models.registry import BackboneSpec, zoo_backbone
from sarfewshot.models.zoo.timm import (
    BLOCK_ATTN_LORA_TARGETS,
    TimmBackbone,
    hub_constructor,
    hub_spec,
)

TIMM_MODELS = {(16, 768, 12): "vit_pe_core_base_patch16_224"}
PROJECTION = 1024  # the width of PE-Core B/16's joint image-text space (timm's head)
#: timm's pretrained config of the .fb file (tests compare): mean 0.5, std 0.5
INPUT = "grey3_half"
INPUT_ADAPTERS[INPUT] = (3, ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
FEATURE = (
    "attention-pooled, projected image embedding (PE-Core's CLIP image embedding before its "
    "L2 normalisation; 1024-d)"
)


class ProjectedEmbedding(TimmBackbone):
    """A CLIP image tower's embedding: timm's whole forward (pooling head and projection)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.num_features = int(model.head.out_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, S, S)`` -> embeddings ``(B, 1024)``."""
        return self.model(x)


def is_pecore(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """A timm PE state dict: a pre-transformer norm and an attention-pooling head."""
    return "norm_pre.weight" in state_dict and "attn_pool.latent" in state_dict


register_family(
    Family(
        name="pecore",
        label="a Perception Encoder ViT (norm_pre, attention-pooling head attn_pool)",
        detect=is_pecore,
        order=70,
        own_readout=True,
        record_family="pecore",
        lora_targets=BLOCK_ATTN_LORA_TARGETS,
        construct=hub_constructor(TIMM_MODELS, ProjectedEmbedding, num_classes=PROJECTION),
    )
)


@zoo_backbone("pe_core_b16", aliases=("pe_core_b16_224",))
def pe_core_b16_spec() -> BackboneSpec:
    """PE-Core B/16 at 224 px."""
    return hub_spec(
        "pe_core_b16", "pecore", "vit_pe_core_base_patch16_224.fb",
        "pecore:patch=16,dim=768,depth=12,heads=12,chans=3",
        description="PE-Core ViT-B/16 (Perception Encoder, CLIP-trained, 224 px)",
        input_adapter=INPUT, feature=FEATURE, pooling="map+proj",
    )  # fmt: skip
