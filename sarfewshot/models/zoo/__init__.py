"""The backbone families, one module each; importing a module registers its family.

Each module fills the hook tables of :mod:`sarfewshot.models.family` (its :class:`Family`:
recognition, geometry, unwrapping, construction, LoRA targets) and registers its backbone names
(:data:`~sarfewshot.models.registry.BACKBONE_REGISTRY`: weights file, sources, input adaptation,
feature definition). Adding a family is one module, its test and one line here.
"""

from __future__ import annotations

from sarfewshot.models.zoo import (
    dinov2,  # noqa: F401 - DINOv2 (timm hub .safetensors)
    dinov3,  # noqa: F401 - DINOv3, natural and satellite (timm hub .safetensors)
    ijepa,  # noqa: F401 - I-JEPA-format files
    pecore,  # noqa: F401 - PE-Core (timm hub .safetensors)
    release,  # noqa: F401 - SAR-JEPA release, iRPE ViT, baselines
    saratrx,  # noqa: F401 - SARATR-X (HiViT)
    sarmae,  # noqa: F401 - SARMAE
    timm,  # noqa: F401 - plain ViTs and named timm models
    torchgeo,  # noqa: F401 - torchgeo's SAR weights (optional dep)
)
