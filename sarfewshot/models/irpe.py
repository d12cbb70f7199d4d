"""Image relative position encoding (iRPE) of SAR-JEPA: product method, contextual, keys only.

Spec: ``../shared/spec/SARJEPA.md`` section 2. A relative offset ``d`` between two patches (rows
and columns separately) falls into one of ``2 * floor(beta) + 1`` buckets by a piecewise index:
exact for ``|d| <= alpha``, logarithmic beyond, capped at ``beta``. The 2-D bucket is
``(r + 3) * 7 + (c + 3)`` (49 spatial buckets at the release's ratio 1.9); every pair that involves
a skipped (class) token uses one extra bucket, 50 in all. One learnable table per attention layer,
shared by all heads, turns a query and a bucket into an additive attention logit.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

ALPHA = 1.9
BETA = 3.8
GAMMA = 15.2


def _piecewise_index(d: torch.Tensor, alpha: float, beta: float, gamma: float) -> torch.Tensor:
    """Bucket of each integer offset in ``d`` (float64) along one axis."""
    mag = d.abs()
    near = torch.round(d)
    # clamp keeps log() finite on the near entries; torch.where discards them anyway
    far = alpha + torch.log(mag.clamp(min=alpha) / alpha) / math.log(gamma / alpha) * (beta - alpha)
    far = torch.sign(d) * torch.clamp(torch.round(far), max=beta)
    idx = torch.where(mag <= alpha, near, far)
    limit = int(beta)
    return idx.trunc().clamp(-limit, limit).long()


def num_spatial_buckets(beta: float = BETA) -> int:
    """Number of 2-D spatial buckets (49 at the release's ratio)."""
    side = 2 * int(beta) + 1
    return side * side


@functools.lru_cache(maxsize=64)
def _bucket_ids_cpu(grid: int, skip: int, alpha: float, beta: float, gamma: float) -> torch.Tensor:
    rows = torch.arange(grid, dtype=torch.float64).repeat_interleave(grid)
    cols = torch.arange(grid, dtype=torch.float64).repeat(grid)
    dr = _piecewise_index(rows[:, None] - rows[None, :], alpha, beta, gamma)
    dc = _piecewise_index(cols[:, None] - cols[None, :], alpha, beta, gamma)
    limit = int(beta)
    side = 2 * limit + 1
    spatial = (dr + limit) * side + (dc + limit)
    n = grid * grid + skip
    ids = torch.full((n, n), side * side, dtype=torch.long)
    ids[skip:, skip:] = spatial
    return ids


def irpe_bucket_ids(
    grid: int,
    skip: int = 1,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
) -> torch.Tensor:
    """Bucket index of every (query, key) pair of a ``grid x grid`` raster plus ``skip`` tokens.

    Args:
        grid: side of the square patch grid.
        skip: number of leading non-spatial tokens (the class token); their rows and columns use
            the extra bucket ``num_spatial_buckets(beta)``.
        alpha, beta, gamma: piecewise-index parameters (release: ratio 1.9 -> 1.9, 3.8, 15.2).

    Returns:
        A cached ``(L, L)`` LongTensor on the CPU, ``L = grid * grid + skip``. Treat it as
        read-only: it is shared by every caller.
    """
    if grid < 1 or skip < 0:
        raise ValueError(f"irpe_bucket_ids: need grid >= 1 and skip >= 0, got {grid}, {skip}")
    # cached tensors must be normal tensors: one made under inference_mode could not be used
    # later in a forward pass that autograd records
    with torch.inference_mode(False):
        return _bucket_ids_cpu(int(grid), int(skip), float(alpha), float(beta), float(gamma))


class IRPEKeys(nn.Module):
    """Contextual iRPE on keys with one table shared by all heads.

    ``forward(q)`` with ``q`` of shape ``(B, H, L, head_dim)`` (unscaled) returns the bias
    ``(B, H, L, L)`` with ``bias[i, j] = q_i . table[:, bucket(i, j)]``, to be added to the scaled
    logits before the softmax. The grid side is ``floor(sqrt(L))`` (``L`` counts skipped tokens).
    """

    def __init__(self, head_dim: int, num_buckets: int = 50, skip: int = 1) -> None:
        super().__init__()
        if num_buckets != num_spatial_buckets() + 1:
            raise ValueError(f"IRPEKeys: the release's ratio needs 50 buckets, got {num_buckets}")
        self.head_dim = head_dim
        self.num_buckets = num_buckets
        self.skip = skip
        self.lookup_table_weight = nn.Parameter(torch.zeros(1, head_dim, num_buckets))
        self._ids: dict[tuple[int, str], torch.Tensor] = {}

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Zero the table: the bias starts neutral and is learned (iRPE's default)."""
        del generator  # deterministic init; the argument keeps one init signature everywhere
        nn.init.zeros_(self.lookup_table_weight)

    def bucket_ids(self, length: int, device: torch.device) -> torch.Tensor:
        """Bucket ids for a sequence of ``length`` tokens, cached per device."""
        key = (length, str(device))
        ids = self._ids.get(key)
        if ids is None:
            grid = math.isqrt(length)
            if grid * grid + self.skip != length:
                raise ValueError(
                    f"iRPE needs {self.skip} leading token(s) plus a square grid of patch tokens;"
                    f" got a sequence of {length} tokens"
                )
            with torch.inference_mode(False):
                ids = irpe_bucket_ids(grid, self.skip).to(device)
            self._ids[key] = ids
        return ids

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """Contextual bias ``(B, H, L, L)`` for queries ``q`` ``(B, H, L, head_dim)``."""
        b, h, length, _ = q.shape
        # one small matmul against the 50 table columns, then a gather: O(L * 50) dot products
        # instead of O(L * L)
        per_bucket = q @ self.lookup_table_weight[0].to(q.dtype)
        ids = self.bucket_ids(length, q.device)
        return torch.gather(per_bucket, -1, ids.expand(b, h, length, length))

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, num_buckets={self.num_buckets}, skip={self.skip}"
