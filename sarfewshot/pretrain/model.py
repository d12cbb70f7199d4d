"""Pretraining models: SAR-JEPA's local masked predictor and the helpers every model shares.

Every model's ``forward(images, generator)`` returns ``{"loss": scalar, "target_var": scalar}``
(``target_var``: the per-dimension variance of the batch's targets averaged over dimensions; a
collapsing latent target drives it to 0). Targets are computed in float32 outside autocast.

State-dict layouts (what ``build_backbone`` reads back):

- :class:`LocalMaskedModel` (``sarjepa`` and the target baselines) subclasses the iRPE ViT, so the
  encoder keys sit at the top level as in the release (``cls_token``, ``patch_embed.*``,
  ``blocks.*``, ``norm.*``), next to ``mask_token``, ``encoder_pred.*`` (Linear D -> P),
  ``decoder_blocks.*`` (iRPE blocks of width P), ``decoder_norm.*`` and ``decoder_pred.*``
  (Linear P -> target dim). The release's unused ``pos_embed`` and its convolution kernels
  ``sarfeature*`` are not stored (the target is computed by :mod:`~sarfewshot.pretrain.targets`).
- the plain-ViT baselines (MAE, I-JEPA) and their layouts are in :mod:`.plain`; they share
  the helpers below.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Mapping

import torch
from torch import nn

from sarfewshot.errors import ConfigError
from sarfewshot.models.irpe import IRPEKeys
from sarfewshot.models.vit_irpe import LN_EPS, Block, IRPEViT
from sarfewshot.pretrain.masking import (
    check_windows,
    gather_tokens,
    local_window_masks,
    random_masks,
)
from sarfewshot.pretrain.targets import compute_target, target_dim


def batch_variance(t: torch.Tensor) -> torch.Tensor:
    """Variance of each target dimension over all patches of the batch, averaged over dims."""
    flat = t.detach().float().reshape(-1, t.shape[-1])
    if flat.shape[0] < 2:
        return flat.new_zeros(())
    return flat.var(dim=0).mean()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE averaged over the target dims, then over the masked patches only (mask True)."""
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    weight = mask.to(per_patch.dtype)
    return (per_patch * weight).sum() / weight.sum().clamp(min=1.0)


def sincos_pos_embed(dim: int, grid: int, prefix: int = 0) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (1, prefix + grid * grid, dim); prefix rows 0.

    A quarter of the channels encodes the row with sines, a quarter with cosines, and the same for
    the column, at frequencies ``10000^(-k / (dim / 4))``.
    """
    if dim % 4:
        raise ConfigError(f"a sin-cos position embedding needs a width divisible by 4; got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64),
        torch.arange(grid, dtype=torch.float64),
        indexing="ij",
    )
    ar = rows.reshape(-1, 1) * omega
    ac = cols.reshape(-1, 1) * omega
    emb = torch.cat([ar.sin(), ar.cos(), ac.sin(), ac.cos()], dim=1).float()
    return torch.cat([torch.zeros(prefix, dim), emb], dim=0)[None]


def varying_length_attention(device: torch.device):
    """An SDPA context without the cuDNN backend on CUDA (a no-op elsewhere).

    cuDNN builds an execution plan per new sequence length; I-JEPA's context and target lengths
    change every step, which made a ViT-B step 3x slower on an H200 (291 vs 86 ms).
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    return sdpa_kernel(backends)


def _target_dtype_guard(x: torch.Tensor):
    # targets are defined in float32 whatever autocast the caller runs under
    return torch.autocast(device_type=x.device.type, enabled=False)


class TargetMixin:
    """Computes the configured target on the model's token grid."""

    target_kind: str
    target_opts: dict
    patch_size: int

    def compute_target(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) images -> (B, L, target dim) float32 targets."""
        with _target_dtype_guard(x):
            return compute_target(self.target_kind, x.float(), self.patch_size, **self.target_opts)


# MODEL.INIT of the iRPE methods: the release's scheme and the toolkit's (IRPEViT.init_weights)
INIT_SCHEMES = ("xavier", "trunc_normal")


def release_init(model: IRPEViT, gen: torch.Generator | None) -> None:
    """The release's initialisation of SAR-JEPA's model (the MAE-style scheme).

    Every Linear: Xavier-uniform weight, zero bias; LayerNorms: ones / zeros; the patch
    convolution: Xavier-uniform on its flattened kernel and PyTorch's default bias (uniform in
    ``+-1 / sqrt(fan_in)``, redrawn here from ``gen`` so the init stays seeded); class token:
    normal std 0.02; iRPE tables: zeros. (The mask token is the caller's, normal std 0.02.)
    """
    with torch.no_grad():
        proj = model.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1), generator=gen)
        if proj.bias is not None:
            bound = 1.0 / math.sqrt(proj.weight[0].numel())
            nn.init.uniform_(proj.bias, -bound, bound, generator=gen)
        if model.cls_token is not None:
            nn.init.normal_(model.cls_token, std=0.02, generator=gen)
        for module in model.modules():
            if not xavier_linear_or_norm(module, gen) and isinstance(module, IRPEKeys):
                module.reset_parameters(gen)


class LocalMaskedModel(TargetMixin, IRPEViT):
    """SAR-JEPA: an iRPE encoder that sees masked patches as a mask token, and an iRPE predictor.

    ``mask_type="local"``: each image gets ``num_windows`` windows of ``window x window`` patches;
    each window is one sequence (class token + window patches in raster order, ``int(w*w*ratio)``
    of them replaced by the mask token) through encoder and predictor. ``mask_type="random"``: one
    sequence per image over the whole grid with a random ``ratio`` share masked. The loss is the
    MSE on masked patches against the target (not normalised).
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        pred_dim: int = 512,
        pred_depth: int = 8,
        pred_heads: int = 16,
        target_kind: str = "gf",
        target_opts: Mapping[str, Any] | None = None,
        mask_type: str = "local",
        window: int = 7,
        num_windows: int = 4,
        mask_ratio: float = 0.8,
        window_draw: str = "uniform",
        init: str = "trunc_normal",
        init_generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=1,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            class_token=True,
            global_pool="token",
            drop_path_rate=drop_path,
        )
        if mask_type not in ("local", "random"):
            raise ConfigError(f"MASK.TYPE {mask_type!r} is not available here; use local or random")
        if init not in INIT_SCHEMES:
            raise ConfigError(f"MODEL.INIT must be one of {', '.join(INIT_SCHEMES)}; got {init!r}")
        self.target_kind = target_kind
        self.target_opts = dict(target_opts or {})
        self.mask_type, self.window, self.num_windows = mask_type, window, num_windows
        self.mask_ratio, self.window_draw = mask_ratio, window_draw
        self.grid = img_size // patch_size
        if mask_type == "local":  # fail at build time, not at the first step
            check_windows(self.grid, window, num_windows, window_draw)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.encoder_pred = nn.Linear(embed_dim, pred_dim)
        self.decoder_blocks = nn.ModuleList(
            Block(pred_dim, pred_heads, mlp_ratio, qkv_bias=True, irpe=True)
            for _ in range(pred_depth)
        )
        self.decoder_norm = nn.LayerNorm(pred_dim, eps=LN_EPS)
        out = target_dim(target_kind, patch_size, **self.target_opts)
        self.decoder_pred = nn.Linear(pred_dim, out)
        if init == "xavier":
            release_init(self, init_generator)
        else:
            self.init_weights(init_generator)
        with torch.no_grad():
            nn.init.normal_(self.mask_token, std=0.02, generator=init_generator)

    def predict(self, patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encoder + predictor on (S, n, D) square-grid sequences; mask (S, n) -> (S, n, T)."""
        tokens = torch.where(mask[..., None], self.mask_token.to(patches.dtype), patches)
        h = self.forward_sequence(self.with_class_token(tokens))
        h = self.encoder_pred(h)
        for block in self.decoder_blocks:
            h = block(h)
        return self.decoder_pred(self.decoder_norm(h))[:, 1:]

    def _sequences(
        self, tokens: torch.Tensor, target: torch.Tensor, gen: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, d = tokens.shape
        dev = tokens.device
        if self.mask_type == "random":
            mask = random_masks(b, n, self.mask_ratio, gen).mask.to(dev)
            return tokens, target, mask
        m = local_window_masks(
            b, self.grid, self.window, self.num_windows, self.mask_ratio, gen, self.window_draw
        )
        index, count = m.index.to(dev), self.window * self.window
        seq = gather_tokens(tokens, index).reshape(-1, count, d)
        tgt = gather_tokens(target, index).reshape(-1, count, target.shape[-1])
        return seq, tgt, m.mask.to(dev).reshape(-1, count)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss and target variance of one batch (B, 1, S, S); masks drawn from ``generator``."""
        target = self.compute_target(x)
        seq, tgt, mask = self._sequences(self.embed(x), target, generator)
        pred = self.predict(seq, mask)
        return {"loss": masked_mse(pred, tgt, mask), "target_var": batch_variance(target)}


def xavier_linear_or_norm(module: nn.Module, gen: torch.Generator | None) -> bool:
    """Xavier-uniform weight and zero bias for a Linear, ones / zeros for a LayerNorm.

    Returns whether ``module`` was one of them (the caller handles the other kinds).
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight, generator=gen)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
        return True
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
        return True
    return False
