"""``partial``: fine-tune the backbone's last N blocks and its final norm, with the head.

``N`` is ``TRAINER.PARTIAL.BLOCKS``; the blocks are the last entries of the family's block list
(``blocks``; for HiViT that list ends with the main-stage attention blocks) and the final norms
are the family's ``final_norms`` beside it (``norm``, ``fc_norm``; see
:mod:`sarfewshot.models.family`). Everything else stays frozen and bit-identical to the weights
file; 0 trains the final norm and the head only. Default 4: in the MAE paper's partial
fine-tuning study (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022,
section 4.3, Fig. 9) tuning the last few blocks recovers most of the gap to full fine-tuning;
a backbone with fewer blocks is refused with a message naming the key. Head, optimiser and
schedule are the fine-tune's. Records carry ``trainable_params``, ``total_params`` and
``partial_blocks``.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from yacs.config import CfgNode

from sarfewshot.engine.registry import TRAINER_REGISTRY
from sarfewshot.models.adapt import train_last_blocks
from sarfewshot.trainers._backbone import PartlyTrainedBackbone


@TRAINER_REGISTRY.register("partial", aliases=("partial_finetune",))
class PartialFineTune(PartlyTrainedBackbone):
    """Fine-tuning of the last ``TRAINER.PARTIAL.BLOCKS`` blocks and the final norm."""

    name = "partial"
    node = "PARTIAL"

    @classmethod
    def extend_cfg(cls, cfg: CfgNode) -> None:
        """Add ``TRAINER.PARTIAL.{BLOCKS, HEAD_INIT_STD}``."""
        cfg.TRAINER.PARTIAL = CfgNode()
        cfg.TRAINER.PARTIAL.BLOCKS = 4
        cfg.TRAINER.PARTIAL.HEAD_INIT_STD = 2e-5

    @classmethod
    def adapt(cls, cfg: Any, backbone: nn.Module) -> dict[str, Any]:
        """Unfreeze the last blocks and the final norms; freeze the rest of the backbone."""
        count = int(cfg.TRAINER.PARTIAL.BLOCKS)
        train_last_blocks(backbone, count, "TRAINER.PARTIAL.BLOCKS")
        return {"partial_blocks": count}
