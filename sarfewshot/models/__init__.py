"""Backbones: the iRPE ViT of SAR-JEPA, timm ViTs, checkpoint loading and the registry.

Public entry points: :func:`build_backbone` (name -> module with ``forward_features(x) -> (B, D)``
and ``num_features``), :func:`list_backbones`, :func:`backbone_status`, :func:`describe_arch`,
:func:`list_archs` and :func:`extract_features`.
"""

from __future__ import annotations

from sarfewshot.models.arch import ArchSpec, list_archs, parse_arch
from sarfewshot.models.checkpoint import LoadReport, safe_load
from sarfewshot.models.features import extract_features
from sarfewshot.models.registry import (
    BACKBONE_REGISTRY,
    BackboneSpec,
    backbone_status,
    build_backbone,
    describe_arch,
    get_backbone_spec,
    list_backbones,
)
from sarfewshot.models.vit_irpe import IRPEViT

__all__ = [
    "BACKBONE_REGISTRY",
    "ArchSpec",
    "BackboneSpec",
    "IRPEViT",
    "LoadReport",
    "backbone_status",
    "build_backbone",
    "describe_arch",
    "extract_features",
    "get_backbone_spec",
    "list_archs",
    "list_backbones",
    "parse_arch",
    "safe_load",
]
