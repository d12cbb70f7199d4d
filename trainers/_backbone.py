"""What the trained protocols share: a TrainerX that owns a backbone (``finetune``, ``linear``),
and one that trains only part of it (``lora``, ``partial``).

The backbone comes from the grid (a fresh copy per cell) or, when the trainer is used the Dassl
way (``sarfewshot dassl-train``), is built from ``MODEL.BACKBONE.NAME`` / ``MODEL.BACKBONE.ARCH``
/ ``MODEL.INIT_WEIGHTS``. Heads are initialised from a generator seeded by ``(SEED, protocol,
"head")``; data order comes from the data manager's seeded loader; the global torch state
(dropout, stochastic depth) is seeded by the engine from ``SEED``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sarfewshot.engine.optim import build_lr_scheduler, build_optimizer
from sarfewshot.engine.protocol import REQUIRES_IMAGES, TrainedProtocol
from sarfewshot.engine.trainer import TrainerX
from sarfewshot.models.adapt import parameter_counts
from sarfewshot.utils.seeding import torch_generator


def init_linear(layer: nn.Linear, std: float, generator: torch.Generator) -> None:
    """Truncated-normal weights (std ``std``, cut at +-2 as timm does) and zero bias."""
    with torch.no_grad():
        nn.init.trunc_normal_(layer.weight, std=std, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()


def build_backbone_from_cfg(cfg: Any) -> nn.Module:
    """The backbone named by the config (the Dassl way, without the grid)."""
    from sarfewshot.models.factory import build_backbone

    size = cfg.INPUT.SIZE
    return build_backbone(
        cfg.MODEL.BACKBONE.NAME,
        weights=cfg.MODEL.INIT_WEIGHTS or None,
        arch=cfg.MODEL.BACKBONE.ARCH or None,
        img_size=int(size[0] if isinstance(size, (list, tuple)) else size),
        seed=0,
    )


class BackboneTrainer(TrainedProtocol, TrainerX):
    """A TrainerX with a backbone, an explicit device and a seeded head generator.

    Extra constructor options: ``backbone`` (an ``nn.Module`` with ``forward_features``; None
    builds it from the config) and ``device`` (``"cpu"``, ``"cuda:1"``...; None keeps the
    engine's choice from ``USE_CUDA``).
    """

    def __init__(self, cfg: Any, dm: Any = None, **options: Any) -> None:
        self._given_backbone = options.pop("backbone", None)
        self._given_device = options.pop("device", None)
        super().__init__(cfg, dm, **options)

    def take_backbone(self) -> nn.Module:
        """The backbone to train or freeze, on the trainer's device."""
        if self._given_device:
            self.device = torch.device(self._given_device)
        backbone = self._given_backbone
        self._given_backbone = None  # the trainer owns it from here on
        if backbone is None:
            backbone = build_backbone_from_cfg(self.cfg)
        return backbone

    def head_generator(self) -> torch.Generator:
        """The generator of the head's initial weights, seeded by ``(SEED, protocol, "head")``."""
        return torch_generator(int(self.cfg.SEED), self.name, "head")

    def forward_backward(self, batch: dict) -> dict[str, float]:
        """Cross-entropy step in ``MODEL.PRECISION``; a non-finite loss stops the cell."""
        inputs, labels = self.parse_batch_train(batch)
        with self.autocast():
            logits = self.model(inputs)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        self.model_backward_and_update(loss)
        acc = (logits.argmax(dim=1) == labels).float().mean()
        return {"loss": float(loss.detach()), "acc": 100.0 * float(acc)}


class PartlyTrainedBackbone(BackboneTrainer):
    """Backbone + linear head where the head and only part of the backbone train (``lora``,
    ``partial``).

    Subclasses say which part in :meth:`adapt`; the rest of the backbone stays frozen and
    bit-identical to its file. The head is the fine-tune's (``Linear(D, C)``, truncated-normal
    weights of std ``TRAINER.<NODE>.HEAD_INIT_STD``, zero bias) and the optimiser and schedule
    are the fine-tune's preset, so the protocols differ from ``finetune`` only in what trains.
    They run one cell at a time (no stacked form for the batched executor). Records carry
    ``trainable_params`` and ``total_params`` (backbone, adapters and head) in ``metrics``.
    """

    node = ""  # the protocol's config node under TRAINER (LORA, PARTIAL)
    default_seeds = (1, 2, 3, 4, 5)  # the fine-tune's
    preset = ("trainers", "finetune", "vit_b16.yaml")

    @classmethod
    def requirements(cls, cfg: Any) -> frozenset[str]:
        """These protocols train on images."""
        return frozenset({REQUIRES_IMAGES})

    @classmethod
    def adapt(cls, cfg: Any, backbone: nn.Module) -> dict[str, Any]:
        """Make the part of ``backbone`` that trains trainable (the rest frozen); record extras."""
        raise NotImplementedError

    @classmethod
    def adapted_model(cls, cfg: Any, backbone: nn.Module, num_classes: int) -> nn.Module:
        """The cell's model before training: the adapted backbone and the seeded head."""
        from sarfewshot.trainers.finetune import FineTuneClassifier

        extras = cls.adapt(cfg, backbone)
        model = FineTuneClassifier(backbone, num_classes)
        std = float(cfg.TRAINER[cls.node].HEAD_INIT_STD)
        init_linear(model.head, std, torch_generator(int(cfg.SEED), cls.name, "head"))
        model.adaptation = extras
        return model

    def build_model(self) -> None:
        """Adapted backbone + head on the device; AdamW over what trains; Dassl's schedule."""
        self.model = self.adapted_model(self.cfg, self.take_backbone(), self.num_classes)
        self.model.to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)  # trainable parameters only
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def cell_extras(self) -> dict[str, Any]:
        """Parameter counts and what was adapted, for the record."""
        return {**parameter_counts(self.model), **self.model.adaptation}
