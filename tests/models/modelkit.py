"""Test helpers: release-format checkpoints and a from-the-spec reference of the iRPE ViT.

The reference is written independently of ``sarfewshot.models`` (explicit bucket formula, loops
and einsum, hand-written LayerNorm and GELU) so agreement is evidence, not tautology.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch


def pretrain_extras(dim: int, num_patches: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Keys the release's pretraining model adds beside the encoder (random values)."""
    pred = 16

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    return {
        "pos_embed": r(1, num_patches + 1, dim),
        "mask_token": r(1, 1, dim),
        "encoder_pred.weight": r(pred, dim),
        "encoder_pred.bias": r(pred),
        "decoder_blocks.0.attn.qkv.weight": r(3 * pred, pred),
        "decoder_blocks.0.attn.rpe_k.lookup_table_weight": r(1, 8, 50),
        "decoder_norm.weight": r(pred),
        "decoder_pred.weight": r(64, pred),
        "sarfeature1.weight_x1": r(1, 1, 11, 11),
    }


def random_irpe_state(
    patch: int,
    dim: int,
    depth: int,
    heads: int,
    mlp_ratio: float,
    cls: bool,
    gen: torch.Generator,
    in_chans: int = 1,
) -> dict[str, torch.Tensor]:
    """An iRPE ViT state dict with the release's key names and random non-zero values."""
    hidden = int(dim * mlp_ratio)
    hd = dim // heads

    def r(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    sd: dict[str, torch.Tensor] = {}
    if cls:
        sd["cls_token"] = r(1, 1, dim, scale=1.0)
    sd["patch_embed.proj.weight"] = r(dim, in_chans, patch, patch, scale=0.1)
    sd["patch_embed.proj.bias"] = r(dim)
    for i in range(depth):
        b = f"blocks.{i}."
        sd[b + "norm1.weight"] = 1.0 + r(dim)
        sd[b + "norm1.bias"] = r(dim)
        sd[b + "attn.qkv.weight"] = r(3 * dim, dim)
        sd[b + "attn.qkv.bias"] = r(3 * dim)
        sd[b + "attn.proj.weight"] = r(dim, dim)
        sd[b + "attn.proj.bias"] = r(dim)
        sd[b + "attn.rpe_k.lookup_table_weight"] = r(1, hd, 50, scale=0.5)
        sd[b + "norm2.weight"] = 1.0 + r(dim)
        sd[b + "norm2.bias"] = r(dim)
        sd[b + "mlp.fc1.weight"] = r(hidden, dim)
        sd[b + "mlp.fc1.bias"] = r(hidden)
        sd[b + "mlp.fc2.weight"] = r(dim, hidden)
        sd[b + "mlp.fc2.bias"] = r(dim)
    sd["norm.weight"] = 1.0 + r(dim)
    sd["norm.bias"] = r(dim)
    return sd


def save_release_checkpoint(path: Path, state: dict[str, torch.Tensor], extras: dict) -> Path:
    """Write ``state`` the way the release does: ``module.`` prefixes, epoch, Namespace args."""
    model = {"module." + k: v for k, v in {**state, **extras}.items()}
    args = argparse.Namespace(model="mae_vit_irpe", input_size=224, mask_ratio=0.8)
    torch.save({"model": model, "epoch": 199, "args": args}, path)
    return path


# ---------------------------------------------------------------- reference implementation


def ref_bucket_1d(d: int) -> int:
    """Spec section 2 piecewise index, one axis, written with plain Python math."""
    alpha, beta, gamma = 1.9, 3.8, 15.2
    if abs(d) <= alpha:
        v = float(round(d))
    else:
        mag = alpha + math.log(abs(d) / alpha) / math.log(gamma / alpha) * (beta - alpha)
        v = math.copysign(min(beta, round(mag)), d)
    return max(-3, min(3, int(v)))


def ref_bucket_table(grid: int, skip: int) -> torch.Tensor:
    """(L, L) buckets: offsets are query position minus key position; skipped tokens -> 49."""
    n = grid * grid + skip
    out = torch.full((n, n), 49, dtype=torch.long)
    for i in range(grid * grid):
        for j in range(grid * grid):
            r = ref_bucket_1d(i // grid - j // grid)
            c = ref_bucket_1d(i % grid - j % grid)
            out[i + skip, j + skip] = (r + 3) * 7 + (c + 3)
    return out


def _ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-6) * w + b


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _ref_attention(x: torch.Tensor, sd: dict, p: str, heads: int, buckets: torch.Tensor):
    _n, dim = x.shape[1], x.shape[2]
    hd = dim // heads
    qkv = torch.einsum("bnc,oc->bno", x, sd[p + "qkv.weight"]) + sd[p + "qkv.bias"]
    q, k, v = qkv.split(dim, dim=-1)
    table = sd[p + "rpe_k.lookup_table_weight"][0]  # (hd, 50)
    outs = []
    for h in range(heads):
        qh, kh, vh = (t[..., h * hd : (h + 1) * hd] for t in (q, k, v))
        logits = torch.einsum("bid,bjd->bij", qh, kh) * hd**-0.5
        # contextual key term: q_i . table[:, bucket(i, j)], q unscaled
        logits = logits + torch.einsum("bid,ijd->bij", qh, table.T[buckets])
        outs.append(torch.einsum("bij,bjd->bid", logits.softmax(-1), vh))
    out = torch.cat(outs, dim=-1)
    return torch.einsum("bnc,oc->bno", out, sd[p + "proj.weight"]) + sd[p + "proj.bias"]


def reference_features(sd: dict, x: torch.Tensor, heads: int, cls: bool) -> torch.Tensor:
    """Features of the spec's iRPE ViT computed straight from a (prefix-free) state dict."""
    w = sd["patch_embed.proj.weight"]
    dim, _, patch, _ = w.shape
    bsz, chans, size, _ = x.shape
    g = size // patch
    # patchify by reshape: (B, C, g, p, g, p) -> (B, g*g, C*p*p), raster order
    tiles = x.reshape(bsz, chans, g, patch, g, patch).permute(0, 2, 4, 1, 3, 5)
    tokens = tiles.reshape(bsz, g * g, -1) @ w.reshape(dim, -1).T + sd["patch_embed.proj.bias"]
    if cls:
        tokens = torch.cat([sd["cls_token"].expand(bsz, 1, dim), tokens], dim=1)
    buckets = ref_bucket_table(g, 1 if cls else 0)
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p = f"blocks.{i}."
        h = _ln(tokens, sd[p + "norm1.weight"], sd[p + "norm1.bias"])
        tokens = tokens + _ref_attention(h, sd, p + "attn.", heads, buckets)
        h = _ln(tokens, sd[p + "norm2.weight"], sd[p + "norm2.bias"])
        h = _gelu(h @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        tokens = tokens + h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    tokens = _ln(tokens, sd["norm.weight"], sd["norm.bias"])
    return tokens[:, 0] if cls else tokens.mean(dim=1)
