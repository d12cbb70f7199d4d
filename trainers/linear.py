"""``linear``: the SAR-JEPA release's linear probe (spec: SARJEPA.md section 5).

The backbone is frozen and kept in eval mode; the head is ``BatchNorm1d(D, affine=False,
eps=1e-6)`` (in train mode while training) followed by ``Linear(D, C)`` with truncated-normal
weights of std ``TRAINER.LINEAR.HEAD_INIT_STD`` (0.01) and zero bias. Same optimiser and schedule
as the fine-tune (``configs/trainers/linear/vit_b16.yaml``).

With no augmentation, the frozen backbone maps each image to the same feature every epoch, so
by default (``TRAINER.LINEAR.FEATURE_CACHE True``) the head trains on features computed once and
cached by the grid. ``FEATURE_CACHE False`` (``--no-feature-cache``) re-runs the backbone on
every batch instead; data order, head init and optimiser steps are identical, so both give the
same accuracy (bit for bit on a CPU; on CUDA the backbone's kernels can depend on the batch
size, so the two can differ by rounding: seen on an H200 under bf16 autocast, 3 of 4 tiny cells
equal and one off by one test image).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode

from sarfewshot.engine.optim import build_lr_scheduler, build_optimizer
from sarfewshot.engine.protocol import REQUIRES_FEATURES, REQUIRES_IMAGES, CellContext, CellData
from sarfewshot.engine.registry import TRAINER_REGISTRY
from sarfewshot.trainers._backbone import BackboneTrainer, init_linear
from sarfewshot.utils.seeding import torch_generator


def linear_head(dim: int, num_classes: int, eps: float = 1e-6) -> nn.Sequential:
    """``BatchNorm1d(dim, affine=False, eps) -> Linear(dim, num_classes)``."""
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=eps), nn.Linear(dim, num_classes))


class FrozenBackboneClassifier(nn.Module):
    """A frozen backbone (always in eval mode, no gradients) feeding a trainable head."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.head = head

    def train(self, mode: bool = True) -> FrozenBackboneClassifier:
        """Switch the head's mode only: the backbone's features must stay those of eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of images, through the frozen backbone."""
        with torch.no_grad():
            feats = self.backbone.forward_features(x).float()  # as the feature cache stores them
        return self.head(feats)


@TRAINER_REGISTRY.register("linear", aliases=("MIM_linear", "linear_probe"))
class LinearProbe(BackboneTrainer):
    """Linear probe on frozen features (cached) or on a frozen backbone (uncached)."""

    name = "linear"
    default_seeds = (1, 2, 3, 4, 5, 6)
    preset = ("trainers", "linear", "vit_b16.yaml")

    def __init__(self, cfg: Any, dm: Any = None, **options: Any) -> None:
        self.feature_input = bool(options.pop("feature_input", False))
        self.feature_dim = options.pop("feature_dim", None)
        super().__init__(cfg, dm, **options)

    @classmethod
    def extend_cfg(cls, cfg: CfgNode) -> None:
        """Add ``TRAINER.LINEAR.{FEATURE_CACHE, HEAD_INIT_STD, BN_EPS}``."""
        cfg.TRAINER.LINEAR = CfgNode()
        cfg.TRAINER.LINEAR.FEATURE_CACHE = True
        cfg.TRAINER.LINEAR.HEAD_INIT_STD = 0.01
        cfg.TRAINER.LINEAR.BN_EPS = 1e-6

    @classmethod
    def requirements(cls, cfg: Any) -> frozenset[str]:
        """Cached features by default; images when the backbone re-runs every epoch."""
        cached = bool(cfg.TRAINER.LINEAR.FEATURE_CACHE)
        return frozenset({REQUIRES_FEATURES if cached else REQUIRES_IMAGES})

    @classmethod
    def trainer_options(cls, cfg: Any, data: CellData, ctx: CellContext) -> dict[str, Any]:
        """Feature input needs only the feature size; image input needs the backbone."""
        if REQUIRES_FEATURES in cls.requirements(cfg):
            return {"feature_input": True, "feature_dim": int(data.train_features.shape[1])}
        return {"backbone": ctx.new_backbone()}

    @classmethod
    def initial_head(cls, cfg: Any, dim: int, num_classes: int) -> nn.Sequential:
        """The cell's head before training (BatchNorm without affine, then the seeded linear).

        The grid's batched executor builds each seed's head with it too.
        """
        head = linear_head(dim, num_classes, float(cfg.TRAINER.LINEAR.BN_EPS))
        std = float(cfg.TRAINER.LINEAR.HEAD_INIT_STD)
        init_linear(head[1], std, torch_generator(int(cfg.SEED), cls.name, "head"))
        return head

    def build_model(self) -> None:
        """The head (on features) or backbone + head; AdamW over the head; Dassl's schedule."""
        if self.feature_input:
            if self._given_device:
                self.device = torch.device(self._given_device)
            dim = int(self.feature_dim or self.train_loader_x.dataset[0]["img"].shape[-1])
            head = self.initial_head(self.cfg, dim, self.num_classes)
            self.model = head
        else:
            backbone = self.take_backbone()
            head = self.initial_head(self.cfg, int(backbone.num_features), self.num_classes)
            self.model = FrozenBackboneClassifier(backbone, head)
        self.model.to(self.device)
        self.optim = build_optimizer(head, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)
