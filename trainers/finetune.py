"""``finetune``: the SAR-JEPA release's few-shot fine-tune (spec: SARJEPA.md section 5).

Every weight is trainable; the head is ``Linear(D, C)`` with truncated-normal weights of std
``TRAINER.FINETUNE.HEAD_INIT_STD`` (2e-5) and zero bias. The optimiser and schedule come from
``configs/trainers/finetune/vit_b16.yaml`` (AdamW lr 1e-3, weight decay 5e-4 on every parameter
as Dassl applies it, betas 0.9/0.999, batch 50, 40 epochs, 2 constant warm-up epochs at 1e-5,
then cosine); no augmentation; the last-epoch model is tested.

Precision: fp32 unless ``MODEL.PRECISION`` is ``bf16`` (``sarfewshot eval --precision bf16``).
Reproducibility: on a CPU the same command gives the same numbers. On CUDA some backward kernels
accumulate in a non-deterministic order, so two fine-tune runs can differ slightly (seen on an
H200 under bf16 autocast: 4 of 4 fine-tune cells of a tiny grid changed in the last digits
between reruns, every other protocol's cells were identical).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from yacs.config import CfgNode

from sarfewshot.engine.optim import build_lr_scheduler, build_optimizer
from sarfewshot.engine.protocol import REQUIRES_IMAGES
from sarfewshot.engine.registry import TRAINER_REGISTRY
from sarfewshot.trainers._backbone import BackboneTrainer, init_linear
from sarfewshot.utils.seeding import torch_generator


class FineTuneClassifier(nn.Module):
    """Backbone features (class token after the final norm) followed by a linear head."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(int(backbone.num_features), num_classes)

    def forward(self, x):
        """Logits of a batch of images ``(B, 1, S, S)``."""
        return self.head(self.backbone.forward_features(x))


@TRAINER_REGISTRY.register("finetune", aliases=("MIM_finetune",))
class FineTune(BackboneTrainer):
    """Full fine-tuning of the backbone with a new linear head."""

    name = "finetune"
    default_seeds = (1, 2, 3, 4, 5)
    preset = ("trainers", "finetune", "vit_b16.yaml")

    @classmethod
    def extend_cfg(cls, cfg: CfgNode) -> None:
        """Add ``TRAINER.FINETUNE.HEAD_INIT_STD``."""
        cfg.TRAINER.FINETUNE = CfgNode()
        cfg.TRAINER.FINETUNE.HEAD_INIT_STD = 2e-5

    @classmethod
    def requirements(cls, cfg: Any) -> frozenset[str]:
        """Fine-tuning trains on images."""
        return frozenset({REQUIRES_IMAGES})

    @classmethod
    def initial_model(cls, cfg: Any, backbone: nn.Module, num_classes: int) -> FineTuneClassifier:
        """The cell's model before training: every weight trainable, the seeded head.

        The grid's batched executor builds each seed's model with it too, so both paths start
        from the same weights.
        """
        backbone.requires_grad_(True)
        model = FineTuneClassifier(backbone, num_classes)
        std = float(cfg.TRAINER.FINETUNE.HEAD_INIT_STD)
        init_linear(model.head, std, torch_generator(int(cfg.SEED), cls.name, "head"))
        return model

    def build_model(self) -> None:
        """Backbone + head on the device; AdamW over every parameter; Dassl's schedule."""
        self.model = self.initial_model(self.cfg, self.take_backbone(), self.num_classes)
        self.model.to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)
