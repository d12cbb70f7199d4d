"""The plain-ViT pretraining baselines: MAE and I-JEPA (timm modules, fixed sin-cos positions).

State-dict layouts (what ``build_backbone`` reads back):

- :class:`MAEModel` is a plain ViT with a fixed 2-D sin-cos ``pos_embed`` (the release's MAE
  baseline is a plain ViT): top-level ``cls_token``, ``pos_embed``, ``patch_embed.*``,
  ``blocks.*``, ``norm.*`` (timm VisionTransformer names) plus ``mask_token``,
  ``decoder_embed.*``, ``decoder_pos_embed``, ``decoder_blocks.*``, ``decoder_norm.*``,
  ``decoder_pred.*``. Masked tokens are dropped from the encoder input, as in MAE.
- :class:`IJEPAModel` holds ``encoder.*`` (a plain ViT without class token: ``pos_embed``,
  ``patch_embed.*``, ``blocks.*``, ``norm.*``), ``target_encoder.*`` (its EMA copy) and
  ``predictor.*``.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from sarfewshot.models.vit_irpe import LN_EPS
from sarfewshot.pretrain.masking import (
    gather_tokens,
    multiblock_masks,
    random_masks,
)
from sarfewshot.pretrain.model import (
    TargetMixin,
    batch_variance,
    masked_mse,
    sincos_pos_embed,
    varying_length_attention,
    xavier_linear_or_norm,
)
from sarfewshot.pretrain.targets import target_dim


def _timm_vit(
    img_size: int,
    patch_size: int,
    dim: int,
    depth: int,
    heads: int,
    mlp_ratio: float,
    class_token: bool,
    drop_path: float,
) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        in_chans=1,
        num_classes=0,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=True,
        class_token=class_token,
        global_pool="token" if class_token else "avg",
        fc_norm=False,
        drop_path_rate=drop_path,
    )


def _timm_blocks(dim: int, depth: int, heads: int, mlp_ratio: float) -> nn.ModuleList:
    from timm.models.vision_transformer import Block as TimmBlock

    return nn.ModuleList(TimmBlock(dim, heads, mlp_ratio, qkv_bias=True) for _ in range(depth))


def _init_linear_norm(module: nn.Module, gen: torch.Generator | None) -> None:
    """Xavier-uniform linear weights, zero biases, unit norms (MAE's decoder init)."""
    with torch.no_grad():
        for m in module.modules():
            if xavier_linear_or_norm(m, gen):
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight.view(m.weight.shape[0], -1), generator=gen)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


class PlainEncoder(nn.Module):
    """A plain ViT encoder (timm modules, fixed sin-cos ``pos_embed``) that can drop tokens.

    ``forward(x, keep)`` embeds patches, adds positions, keeps the patch indices ``keep`` (B, k)
    when given, prepends the class token (if any) and runs the blocks and the final norm.
    """

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        class_token: bool,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        vit = _timm_vit(img_size, patch_size, dim, depth, heads, mlp_ratio, class_token, drop_path)
        self.num_prefix_tokens = 1 if class_token else 0
        self.grid = img_size // patch_size
        if class_token:
            self.cls_token = vit.cls_token
        self.pos_embed = vit.pos_embed
        self.patch_embed, self.blocks, self.norm = vit.patch_embed, vit.blocks, vit.norm
        self.pos_embed.requires_grad_(False)

    def reset(self, gen: torch.Generator | None) -> None:
        """MAE's encoder init: sin-cos positions, Xavier linears, class token std 0.02."""
        _init_linear_norm(self, gen)
        with torch.no_grad():
            self.pos_embed.copy_(
                sincos_pos_embed(self.pos_embed.shape[-1], self.grid, self.num_prefix_tokens)
            )
            if self.num_prefix_tokens:
                nn.init.normal_(self.cls_token, std=0.02, generator=gen)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        p = self.num_prefix_tokens
        tokens = self.patch_embed(x) + self.pos_embed[:, p:].to(x.dtype)
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        if p:
            cls = (self.cls_token + self.pos_embed[:, :p]).expand(tokens.shape[0], -1, -1)
            tokens = torch.cat([cls.to(tokens.dtype), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


class MAEModel(TargetMixin, PlainEncoder):
    """MAE: random masking, an encoder on the visible tokens only, a plain-ViT decoder.

    The encoder is a plain ViT with a fixed sin-cos ``pos_embed`` (iRPE needs a square grid, which
    the visible tokens do not form). The decoder embeds the encoder output to ``pred_dim``, puts the
    mask token at the masked positions, adds a fixed sin-cos ``decoder_pos_embed`` and predicts the
    target of every patch; the loss counts masked patches only.
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
        target_kind: str = "pixel",
        target_opts: Mapping[str, Any] | None = None,
        mask_ratio: float = 0.75,
        init_generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, True, drop_path
        )
        self.patch_size = patch_size
        self.target_kind = target_kind
        self.target_opts = dict(target_opts or {})
        self.mask_ratio = mask_ratio
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_dim))
        self.decoder_embed = nn.Linear(embed_dim, pred_dim)
        pos = sincos_pos_embed(pred_dim, self.grid, prefix=1)
        self.decoder_pos_embed = nn.Parameter(pos, requires_grad=False)
        self.decoder_blocks = _timm_blocks(pred_dim, pred_depth, pred_heads, mlp_ratio)
        self.decoder_norm = nn.LayerNorm(pred_dim, eps=LN_EPS)
        out = target_dim(target_kind, patch_size, **self.target_opts)
        self.decoder_pred = nn.Linear(pred_dim, out)
        self.reset(init_generator)
        with torch.no_grad():
            nn.init.normal_(self.mask_token, std=0.02, generator=init_generator)

    def decode(self, h: torch.Tensor, keep: torch.Tensor, n: int) -> torch.Tensor:
        """Encoder output (B, 1 + k, D) of visible patches ``keep`` -> predictions (B, n, T)."""
        h = self.decoder_embed(h)
        b, _, d = h.shape
        full = self.mask_token.to(h.dtype).expand(b, n, d)
        full = full.scatter(1, keep[..., None].expand(-1, -1, d), h[:, 1:])
        seq = torch.cat([h[:, :1], full], dim=1) + self.decoder_pos_embed.to(h.dtype)
        for block in self.decoder_blocks:
            seq = block(seq)
        return self.decoder_pred(self.decoder_norm(seq))[:, 1:]

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss and target variance of one batch; masks drawn from ``generator``."""
        target = self.compute_target(x)
        b, n = target.shape[:2]
        masks = random_masks(b, n, self.mask_ratio, generator)
        keep, mask = masks.keep.to(x.device), masks.mask.to(x.device)
        pred = self.decode(PlainEncoder.forward(self, x, keep), keep, n)
        return {"loss": masked_mse(pred, target, mask), "target_var": batch_variance(target)}


class JEPAPredictor(nn.Module):
    """I-JEPA's narrow predictor: context tokens plus positioned mask tokens -> target features."""

    def __init__(
        self, embed_dim: int, pred_dim: int, depth: int, heads: int, mlp_ratio: float, grid: int
    ) -> None:
        super().__init__()
        self.predictor_embed = nn.Linear(embed_dim, pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_dim))
        pos = sincos_pos_embed(pred_dim, grid)
        self.pos_embed = nn.Parameter(pos, requires_grad=False)
        self.blocks = _timm_blocks(pred_dim, depth, heads, mlp_ratio)
        self.norm = nn.LayerNorm(pred_dim, eps=LN_EPS)
        self.proj = nn.Linear(pred_dim, embed_dim)

    def forward(
        self, z: torch.Tensor, context: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """z (B, c, D) at ``context`` (B, c); ``targets`` (B, nb, t) -> preds (B, nb, t, D)."""
        b, nb, t = targets.shape
        pos = self.pos_embed.to(z.dtype).expand(b, -1, -1)
        ctx = self.predictor_embed(z) + gather_tokens(pos, context)
        ctx = ctx.repeat_interleave(nb, dim=0)
        tgt_pos = gather_tokens(pos, targets.reshape(b, nb * t)).reshape(b * nb, t, -1)
        seq = torch.cat([ctx, self.mask_token.to(z.dtype) + tgt_pos], dim=1)
        for block in self.blocks:
            seq = block(seq)
        out = self.proj(self.norm(seq[:, ctx.shape[1] :]))
        return out.reshape(b, nb, t, -1)


class IJEPAModel(nn.Module):
    """I-JEPA: a context encoder on the context block, an EMA target encoder on the full image,
    and a predictor regressing the (layer-normalised) target features of each target block
    (smooth-L1 loss, as I-JEPA). ``target_var`` is the variance of the target features across
    patches and images: it falls towards 0 when the representation collapses.
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
        pred_dim: int = 384,
        pred_depth: int = 6,
        pred_heads: int = 12,
        num_targets: int = 4,
        target_scale: tuple[float, float] = (0.15, 0.2),
        target_aspect: tuple[float, float] = (0.75, 1.5),
        context_scale: tuple[float, float] = (0.85, 1.0),
        ema: tuple[float, float] = (0.996, 1.0),
        init_generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.encoder = PlainEncoder(
            img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, False, drop_path
        )
        self.grid = self.encoder.grid
        self.predictor = JEPAPredictor(
            embed_dim, pred_dim, pred_depth, pred_heads, mlp_ratio, self.grid
        )
        self.mask_opts = dict(
            num_targets=num_targets,
            target_scale=tuple(target_scale),
            target_aspect=tuple(target_aspect),
            context_scale=tuple(context_scale),
        )
        self.ema = (float(ema[0]), float(ema[1]))
        self.encoder.reset(init_generator)
        _init_linear_norm(self.predictor, init_generator)
        with torch.no_grad():
            nn.init.normal_(self.predictor.mask_token, std=0.02, generator=init_generator)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss and target-feature variance of one batch; masks drawn from ``generator``."""
        masks = multiblock_masks(x.shape[0], self.grid, generator=generator, **self.mask_opts)
        with varying_length_attention(x.device):
            return self._forward(x, masks.context.to(x.device), masks.targets.to(x.device))

    def _forward(
        self, x: torch.Tensor, context: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            h = self.target_encoder(x).float()
            h = F.layer_norm(h, (h.shape[-1],))
            tgt = gather_tokens(h, targets.reshape(x.shape[0], -1)).reshape(*targets.shape, -1)
        z = self.encoder(x, context)
        pred = self.predictor(z, context, targets)
        loss = F.smooth_l1_loss(pred.float(), tgt)
        return {"loss": loss, "target_var": batch_variance(h)}

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """EMA update of the target encoder; momentum goes linearly from ema[0] to ema[1] over
        the run (``progress`` in [0, 1])."""
        m = self.ema[0] + min(max(progress, 0.0), 1.0) * (self.ema[1] - self.ema[0])
        for t, s in zip(self.target_encoder.parameters(), self.encoder.parameters()):
            if s.requires_grad:
                t.mul_(m).add_(s.detach(), alpha=1.0 - m)
