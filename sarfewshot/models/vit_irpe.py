"""The SAR-JEPA backbone: a ViT with iRPE in every attention layer and no absolute position.

Spec: ``../shared/spec/SARJEPA.md`` section 2. Parameter names follow the release
(``cls_token``, ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,attn.rpe_k,norm2,
mlp.fc1,mlp.fc2}``, ``norm``) so its checkpoints load without renaming. Nothing depends on the image
size: the same weights run on any square grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sarfewshot.models.irpe import IRPEKeys, num_spatial_buckets

LN_EPS = 1e-6


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's residual branch with probability ``p`` in training.

    Draws come from ``self.generator`` when the owner sets one (see
    :meth:`IRPEViT.set_generator`), else from torch's global generator.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        gen = self.generator
        device = gen.device if gen is not None else x.device
        mask = torch.rand(shape, generator=gen, device=device) < keep
        return x * mask.to(device=x.device, dtype=x.dtype) / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head self-attention with the iRPE contextual key term as an additive logit bias.

    ``fused=True`` (default) calls ``F.scaled_dot_product_attention`` with the bias as a float
    ``attn_mask`` so GPUs can use fused kernels; ``fused=False`` runs the plain
    ``softmax(q k^T / sqrt(d) + bias) v`` formulation (reference and benchmark).
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, irpe: bool = True, skip: int = 1
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused = True
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rpe_k = IRPEKeys(self.head_dim, num_spatial_buckets() + 1, skip) if irpe else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = self.rpe_k(q) if self.rpe_k is not None else None
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            logits = (q @ k.transpose(-2, -1)) * self.scale
            if bias is not None:
                logits = logits + bias
            out = logits.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Two linear layers with a GELU between (``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        irpe: bool = True,
        drop_path: float = 0.0,
        skip: int = 1,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, irpe=irpe, skip=skip)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution -> ``(B, N, D)`` tokens in raster order."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] != x.shape[-2] or x.shape[-1] % self.patch_size:
            raise ValueError(
                f"expected square images (B, C, S, S) with S a multiple of {self.patch_size}, "
                f"got shape {tuple(x.shape)}"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class IRPEViT(nn.Module):
    """ViT with iRPE and no absolute position embedding (SAR-JEPA's encoder).

    ``forward_features(x)`` returns ``(B, D)``: the class token after the final norm
    (``global_pool="token"``) or the mean of the patch tokens (``"avg"``). ``img_size`` is only a
    default for callers; no parameter depends on it.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 1,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        class_token: bool = True,
        global_pool: str = "token",
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f"IRPEViT: global_pool must be 'token' or 'avg', got {global_pool!r}")
        if global_pool == "token" and not class_token:
            raise ValueError("IRPEViT: global_pool='token' needs class_token=True")
        self.img_size = img_size
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.embed_dim = self.num_features = embed_dim
        self.num_heads = num_heads
        self.class_token = class_token
        self.global_pool = global_pool
        self.num_prefix_tokens = 1 if class_token else 0
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        rates = torch.linspace(0, drop_path_rate, depth).tolist() if depth else []
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, True, rates[i], self.num_prefix_tokens)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter from ``generator`` (global RNG when None).

        Linear layers: truncated normal std 0.02, zero bias; patch projection: Xavier-uniform on
        its flattened kernel; class token: normal std 0.02; norms: ones/zeros; iRPE tables: zeros.
        """
        with torch.no_grad():
            w = self.patch_embed.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1), generator=generator)
            nn.init.zeros_(self.patch_embed.proj.bias)
            if self.cls_token is not None:
                nn.init.normal_(self.cls_token, std=0.02, generator=generator)
            for module in self.modules():
                _init_module(module, generator)

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Route stochastic-depth draws through ``generator`` (a seeded, caller-owned one)."""
        for module in self.modules():
            if isinstance(module, DropPath):
                module.generator = generator

    def grid_size(self, img_size: int) -> int:
        """Side of the patch grid for a square input of ``img_size`` pixels."""
        return img_size // self.patch_size

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens ``(B, N, D)`` in raster order (no class token, no position term)."""
        return self.patch_embed(x)

    def forward_sequence(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the blocks and the final norm on ``(B, L, D)`` tokens.

        With a class token it must come first; the rest must be a square raster-ordered grid.
        """
        x = tokens
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def with_class_token(self, patches: torch.Tensor) -> torch.Tensor:
        """Prepend the class token to ``(B, N, D)`` patch tokens (no-op without one)."""
        if self.cls_token is None:
            return patches
        cls = self.cls_token.to(patches.dtype).expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, S, S)`` -> features ``(B, D)``."""
        out = self.forward_sequence(self.with_class_token(self.embed(x)))
        if self.global_pool == "token":
            return out[:, 0]
        return out[:, self.num_prefix_tokens :].mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def set_fused_attention(self, fused: bool) -> None:
        """Switch every attention layer between SDPA (True) and the plain softmax (False)."""
        for module in self.modules():
            if isinstance(module, Attention):
                module.fused = fused


def _init_module(module: nn.Module, generator: torch.Generator | None) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02, generator=generator)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, IRPEKeys):
        module.reset_parameters(generator)
