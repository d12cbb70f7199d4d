"""``lora``: low-rank adapters on the backbone's attention projections, trained with the head.

The layers wrapped are the family's ``lora_targets`` (``qkv`` and ``proj`` of every attention
block for the iRPE ViT, HiViT and timm ViTs; see :mod:`sarfewshot.models.family`), or
``TRAINER.LORA.TARGETS`` when given. Adapters come from ``peft`` (the ``adapters`` extra); their
``B`` starts at zero, so before training the features are the frozen backbone's. The base
weights stay frozen: after a cell they are bit-identical to the weights file.

Defaults (``TRAINER.LORA.*``): rank 8, the rank of most of the LoRA paper's experiments (Hu et
al., ICLR 2022, section 7) and ``peft.LoraConfig``'s default ``r``; alpha 16 (scale
alpha / rank = 2); dropout 0.1 on the adapters' input, as in peft's LoRA guide for ViT image
classification. Head, optimiser and schedule are the fine-tune's (``configs/trainers/finetune/
vit_b16.yaml``), so ``lora`` and ``finetune`` differ only in what trains. Records carry
``trainable_params``, ``total_params`` and ``lora_layers`` (the number of wrapped layers).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from yacs.config import CfgNode

from sarfewshot.engine.registry import TRAINER_REGISTRY
from sarfewshot.errors import ConfigError
from sarfewshot.models.adapt import add_lora, default_lora_targets, require_peft
from sarfewshot.trainers._backbone import PartlyTrainedBackbone
from sarfewshot.utils.seeding import derive_seed


@TRAINER_REGISTRY.register("lora")
class LoRA(PartlyTrainedBackbone):
    """LoRA adapters (peft) on the backbone's attention projections, plus a linear head."""

    name = "lora"
    node = "LORA"

    @classmethod
    def extend_cfg(cls, cfg: CfgNode) -> None:
        """Add ``TRAINER.LORA.{RANK, ALPHA, DROPOUT, TARGETS, HEAD_INIT_STD}``."""
        cfg.TRAINER.LORA = CfgNode()
        cfg.TRAINER.LORA.RANK = 8
        cfg.TRAINER.LORA.ALPHA = 16.0
        cfg.TRAINER.LORA.DROPOUT = 0.1
        cfg.TRAINER.LORA.TARGETS = ()  # empty: the backbone family's lora_targets
        cfg.TRAINER.LORA.HEAD_INIT_STD = 2e-5

    @classmethod
    def preflight(cls, cfg: Any) -> None:
        """Refuse a grid before any cell runs when peft is absent (else the cells before the
        first lora cell would run, and every cell after it would not)."""
        require_peft()

    @classmethod
    def adapt(cls, cfg: Any, backbone: nn.Module) -> dict[str, Any]:
        """Wrap the target layers in seeded adapters; everything else in the backbone freezes."""
        lora = cfg.TRAINER.LORA
        rank, alpha, dropout = int(lora.RANK), float(lora.ALPHA), float(lora.DROPOUT)
        if rank < 1 or alpha <= 0 or not 0.0 <= dropout < 1.0:
            raise ConfigError(
                f"TRAINER.LORA: RANK {lora.RANK} must be >= 1, ALPHA {lora.ALPHA} > 0 and "
                f"DROPOUT {lora.DROPOUT} in [0, 1)"
            )
        targets = tuple(str(t) for t in lora.TARGETS) or default_lora_targets(backbone)
        seed = derive_seed(int(cfg.SEED), cls.name, "adapters")
        names = add_lora(backbone, rank, alpha, dropout, targets, seed)
        return {"lora_layers": len(names)}
