"""Backbones: the iRPE ViT of SAR-JEPA, the zoo's families, checkpoint loading and the registry.

Public entry points: :func:`build_backbone` (name -> module with ``forward_features(x) -> (B, D)``
and ``num_features``), :func:`list_backbones`, :func:`backbone_status`, :func:`describe_arch`,
:func:`list_archs` and :func:`extract_features`. Importing the package imports
:mod:`sarfewshot.models.zoo`, whose family modules fill the hook tables and the name registry.
"""

from __future__ import annotations

from sarfewshot.models import zoo  # noqa: E402,F401,I001 - registers every family (last)
from sarfewshot.models.arch import ArchSpec, list_archs, parse_arch
from sarfewshot.models.checkpoint import LoadReport, safe_load
from sarfewshot.models.factory import build_backbone, describe_arch, lora_targets
from sarfewshot.models.features import extract_features
from sarfewshot.models.registry import (
    BACKBONE_REGISTRY,
    BackboneSpec,
    backbone_status,
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
    "lora_targets",
    "parse_arch",
    "safe_load",
]
