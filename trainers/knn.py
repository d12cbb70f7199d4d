"""``knn``: cosine k-nearest-neighbour classification on frozen features.

Every k of ``TRAINER.KNN.KS`` is scored in one pass (one similarity matrix, one top-k); votes
are weighted by ``exp(similarity / T)`` (``TRAINER.KNN.TEMPERATURE``; 0 gives plain majority
votes). The cell's primary accuracy is the one at ``TRAINER.KNN.K`` (default 10), capped by the
support-set size; every k's accuracy is recorded under ``metrics["knn"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from yacs.config import CfgNode

from sarfewshot.engine.protocol import CellData, FeatureProtocol, Scorer, batches, l2_normalize
from sarfewshot.engine.registry import TRAINER_REGISTRY


def knn_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    query_x: torch.Tensor,
    ks: list[int],
    num_classes: int,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> dict[int, torch.Tensor]:
    """Predict labels of ``query_x`` for every ``k`` in ``ks`` with one top-k search.

    Args:
        train_x, train_y: support features ``(N, D)`` and labels ``(N,)``.
        query_x: query features ``(Q, D)``.
        ks: neighbour counts, each at most ``N``.
        num_classes: size of the vote vector.
        temperature: vote weight ``exp(sim / temperature)``; ``<= 0`` means one vote each.
        chunk: queries per similarity block (bounds memory on large test sets).

    Returns:
        ``{k: predictions (Q,)}``.
    """
    support = l2_normalize(train_x.float())
    kmax = max(ks)
    out: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for sl in batches(query_x.shape[0], chunk):
        sims = l2_normalize(query_x[sl].float()) @ support.T
        top_sim, top_idx = sims.topk(kmax, dim=1)
        top_lab = train_y[top_idx]
        weights = (top_sim / temperature).exp() if temperature > 0 else torch.ones_like(top_sim)
        for k in ks:
            votes = torch.zeros(top_sim.shape[0], num_classes, dtype=weights.dtype)
            votes.scatter_add_(1, top_lab[:, :k], weights[:, :k])
            out[k].append(votes.argmax(dim=1))
    return {k: torch.cat(v) for k, v in out.items()}


@TRAINER_REGISTRY.register("knn")
class KNN(FeatureProtocol):
    """Cosine kNN on cached features; several k in one pass."""

    name = "knn"
    preset = ("trainers", "knn", "default.yaml")

    @classmethod
    def extend_cfg(cls, cfg: CfgNode) -> None:
        """Add ``TRAINER.KNN.{KS, K, TEMPERATURE}``."""
        cfg.TRAINER.KNN = CfgNode()
        cfg.TRAINER.KNN.KS = (1, 5, 10, 20)  # every k scored in the same pass
        cfg.TRAINER.KNN.K = 10  # the k reported as the cell's accuracy
        cfg.TRAINER.KNN.TEMPERATURE = 0.07  # vote weight exp(sim / T); 0 = majority vote

    @classmethod
    def fit(cls, cfg: CfgNode, data: CellData) -> Scorer:
        """The support set is the model; the scorer predicts with the primary k and reports
        every k's accuracy in the extras."""
        train_x, train_y = data.features("train")
        support = len(train_y)
        primary = min(int(cfg.TRAINER.KNN.K), support)
        ks = sorted({min(int(k), support) for k in cfg.TRAINER.KNN.KS if int(k) > 0} | {primary})

        def score(test_x: np.ndarray, test_y: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
            preds = knn_predict(
                torch.from_numpy(train_x),
                torch.from_numpy(train_y),
                torch.from_numpy(test_x),
                ks,
                data.num_classes,
                float(cfg.TRAINER.KNN.TEMPERATURE),
            )
            per_k = {
                f"k={k}": 100.0 * float((p.numpy() == test_y).mean()) for k, p in preds.items()
            }
            return preds[primary].numpy(), {"knn": per_k, "knn_k": primary}

        return score
