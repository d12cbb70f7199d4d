"""``prototype``: nearest class mean on centred, L2-normalised frozen features (SimpleShot CL2N).

Support and query features are centred by the support-set mean and scaled to unit length; each
class prototype is the mean of its normalised support features; a query takes the class of the
nearest prototype (Euclidean distance).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from yacs.config import CfgNode

from sarfewshot.engine.protocol import CellData, FeatureProtocol, Scorer, l2_normalize
from sarfewshot.engine.registry import TRAINER_REGISTRY


def prototype_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    query_x: torch.Tensor,
    num_classes: int,
    center: bool = True,
) -> torch.Tensor:
    """Nearest-class-mean predictions for ``query_x``.

    Args:
        train_x, train_y: support features ``(N, D)`` and labels ``(N,)``.
        query_x: query features ``(Q, D)``.
        num_classes: number of classes; classes absent from the support set are never predicted.
        center: subtract the support mean before normalising.

    Returns:
        Predicted labels ``(Q,)``.
    """
    train_x, query_x = train_x.double(), query_x.double()
    mean = train_x.mean(dim=0, keepdim=True) if center else torch.zeros_like(train_x[:1])
    support = l2_normalize(train_x - mean)
    query = l2_normalize(query_x - mean)
    sums = torch.zeros(num_classes, support.shape[1], dtype=support.dtype)
    sums.index_add_(0, train_y, support)
    counts = torch.bincount(train_y, minlength=num_classes).to(support.dtype)
    protos = sums / counts.clamp_min(1).unsqueeze(1)
    dist = torch.cdist(query, protos)
    dist[:, counts == 0] = float("inf")
    return dist.argmin(dim=1)


@TRAINER_REGISTRY.register("prototype", aliases=("ncm",))
class Prototype(FeatureProtocol):
    """Nearest class mean after centring and L2 normalisation."""

    name = "prototype"
    preset = ("trainers", "prototype", "default.yaml")

    @classmethod
    def extend_cfg(cls, cfg: CfgNode) -> None:
        """Add ``TRAINER.PROTOTYPE.CENTER``."""
        cfg.TRAINER.PROTOTYPE = CfgNode()
        cfg.TRAINER.PROTOTYPE.CENTER = True  # subtract the support mean before normalising

    @classmethod
    def fit(cls, cfg: CfgNode, data: CellData) -> Scorer:
        """The support features; the scorer takes each query's nearest prototype."""
        train_x, train_y = data.features("train")

        def score(test_x: np.ndarray, _test_y: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
            preds = prototype_predict(
                torch.from_numpy(train_x),
                torch.from_numpy(train_y),
                torch.from_numpy(test_x),
                data.num_classes,
                bool(cfg.TRAINER.PROTOTYPE.CENTER),
            )
            return preds.numpy(), {}

        return score
