"""SARATR-X: its HiViT encoder (Zhang et al., ICLR 2023, written from the paper), the geometry
inferred from its files, its checkpoint filter, its preset and its backbone name.

A hierarchical ViT without window attention: each 16x16 patch is embedded as a grid of
``inner x inner`` sub-patches; stem stages of MLP-only blocks run on that grid and halve it with
patch merging until one token per patch is left; the main stage is a stack of plain attention
blocks over the patches with an absolute position embedding. The state-dict names follow the
released checkpoints (``patch_embed.proj``, ``absolute_pos_embed``, one ``blocks`` list that holds
stem blocks, merges and main blocks in order).

The readout is SARATR-X's linear-probe feature: the mean of the main-stage tokens, then
``fc_norm``. Relative position tables are not built: SARATR-X's downstream model runs with
``rpe=False`` and ignores them when a file carries them. The release trained at 224 px; at
another ``--img-size`` the ``absolute_pos_embed`` is interpolated (bicubic) and a warning says so
once (the release itself never interpolates it).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from sarfewshot.errors import WeightsError
from sarfewshot.models.arch import ArchSpec, register_preset
from sarfewshot.models.checkpoint import MAE_EXTRA_KEYS, PATCH_KEY
from sarfewshot.models.family import family
from sarfewshot.models.geometry import block_indices, need, standard_heads
from sarfewshot.models.hub import WeightSource
from sarfewshot.models.registry import BackboneSpec, zoo_backbone

LN_EPS = 1e-6


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        weights = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
        out = weights.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class HiViTBlock(nn.Module):
    """Pre-norm residual block; without heads it is MLP-only (the stem blocks)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool = True) -> None:
        super().__init__()
        if heads > 0:
            self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
            self.attn = _Attention(dim, heads, qkv_bias)
        self.has_attn = heads > 0
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_attn:
            x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerge(nn.Module):
    """Halve the sub-patch grid ``(B, N, h, w, C) -> (B, N, h/2, w/2, 2C)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim * 4, eps=LN_EPS)
        self.reduction = nn.Linear(dim * 4, dim * 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the 2x2 neighbours in (row, column) order (0,0), (1,0), (0,1), (1,1), as released
        parts = [x[..., r::2, c::2, :] for c in (0, 1) for r in (0, 1)]
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))


class PatchEmbed(nn.Module):
    """Embed each ``patch x patch`` patch as an ``inner x inner`` grid of sub-patch vectors."""

    def __init__(self, patch_size: int, inner: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch_size, self.inner = patch_size, inner
        step = patch_size // inner
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=step, stride=step)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        gh, gw, i = h // self.patch_size, w // self.patch_size, self.inner
        y = self.proj(x).view(b, -1, gh, i, gw, i).permute(0, 2, 4, 3, 5, 1)
        return self.norm(y.reshape(b, gh * gw, i, i, -1))


class HiViT(nn.Module):
    """HiViT encoder with the toolkit's ``forward_features(x) -> (B, D)`` contract.

    Args:
        img_size: input side (a multiple of ``patch_size``).
        patch_size: side of one token's patch.
        in_chans: input channels (3 for SARATR-X; the wrapper replicates the chip).
        embed_dim: main-stage width; stem stage ``s`` of ``S`` is ``embed_dim / 2**(S-1-s)`` wide.
        depths: blocks per stage; a stem stage runs ``2 * depth`` MLP-only blocks.
        num_heads: attention heads of the main stage.
        mlp_ratio / stem_mlp_ratio: hidden width factors of main and stem MLPs.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 512,
        depths: tuple[int, ...] = (2, 2, 20),
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        stem_mlp_ratio: float = 3.0,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        stems = len(depths) - 1
        inner = 2**stems
        if patch_size % inner or img_size % patch_size:
            raise WeightsError(
                f"HiViT: patch {patch_size} must split into {inner}x{inner} sub-patches and "
                f"the image side {img_size} must be a multiple of it"
            )
        self.num_features = embed_dim
        self.num_main_blocks = depths[-1]
        width = embed_dim // 2**stems
        self.patch_embed = PatchEmbed(patch_size, inner, in_chans, width)
        grid = img_size // patch_size
        self.absolute_pos_embed = nn.Parameter(torch.zeros(1, grid * grid, embed_dim))
        nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        blocks: list[nn.Module] = []
        for depth in depths[:-1]:
            blocks += [HiViTBlock(width, 0, stem_mlp_ratio, qkv_bias) for _ in range(2 * depth)]
            blocks.append(PatchMerge(width))
            width *= 2
        blocks += [HiViTBlock(width, num_heads, mlp_ratio, qkv_bias) for _ in range(depths[-1])]
        self.blocks = nn.ModuleList(blocks)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.apply(_init_weights)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Main-stage tokens ``(B, N, D)``."""
        x = self.patch_embed(x)
        split = len(self.blocks) - self.num_main_blocks
        for blk in self.blocks[:split]:
            x = blk(x)
        x = x[:, :, 0, 0, :] + self.absolute_pos_embed
        for blk in self.blocks[split:]:
            x = blk(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, S, S)`` -> ``fc_norm`` of the mean main-stage token ``(B, D)``."""
        return self.fc_norm(self.tokens(x).mean(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _stage_layout(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Kind of each HiViT ``blocks.N``: ``stem`` (MLP only), ``merge`` or ``main`` (attention)."""
    kinds = []
    for i in block_indices(state_dict):
        if f"blocks.{i}.reduction.weight" in state_dict:
            kinds.append("merge")
        else:
            kinds.append("main" if f"blocks.{i}.attn.qkv.weight" in state_dict else "stem")
    return kinds


def infer_hivit_arch(state_dict: Mapping[str, torch.Tensor], heads: int | None = None) -> dict:
    """Geometry of a HiViT (SARATR-X) from its keys: stages, widths, sub-patch grid, ratios."""
    kinds = _stage_layout(state_dict)
    if not kinds or kinds[-1] != "main" or "merge" not in kinds:
        raise WeightsError("cannot infer the HiViT stages: blocks.N.* keys are not stem/merge/main")
    cuts = [i for i, k in enumerate(kinds) if k == "merge"]
    bounds = [-1, *cuts]
    stems = [cuts[j] - bounds[j] - 1 for j in range(len(cuts))]
    if any(n % 2 for n in stems) or "merge" in kinds[cuts[-1] + 1 :]:
        raise WeightsError(f"HiViT stem stages of {stems} MLP blocks: expected an even count each")
    depths = (*(n // 2 for n in stems), len(kinds) - cuts[-1] - 1)
    conv = need(state_dict, PATCH_KEY, "patch embedding")
    dim = int(need(state_dict, f"blocks.{len(kinds) - 1}.attn.qkv.weight", "width").shape[1])
    main_fc1 = state_dict[f"blocks.{len(kinds) - 1}.mlp.fc1.weight"]
    stem_fc1 = state_dict.get("blocks.0.mlp.fc1.weight")
    patch = int(conv.shape[-1]) * 2 ** len(cuts)
    full = f"hivit:patch={patch},dim={dim},depths={'-'.join(map(str, depths))},heads=H"
    return {
        "patch_size": patch,
        "in_chans": int(conv.shape[1]),
        "embed_dim": dim,
        "depth": depths[-1],
        "depths": depths,
        "num_heads": standard_heads(dim, "a HiViT", full, heads),
        "mlp_ratio": float(main_fc1.shape[0]) / dim,
        "stem_mlp_ratio": float(stem_fc1.shape[0]) / conv.shape[0] if stem_fc1 is not None else 3.0,
        "qkv_bias": f"blocks.{len(kinds) - 1}.attn.qkv.bias" in state_dict,
        "class_token": False,
        "global_pool": "avg",
    }


def _is_hivit(state_dict: Mapping[str, torch.Tensor]) -> bool:
    merges = any(k.endswith(".reduction.weight") for k in state_dict)
    return "absolute_pos_embed" in state_dict and merges


@family(
    "hivit",
    label="a HiViT (SARATR-X: absolute_pos_embed, patch-merging blocks)",
    detect=_is_hivit,
    order=10,
    infer=infer_hivit_arch,
    own_readout=True,
    record_family="hivit",
    lora_targets=("qkv", "proj"),
)
def construct_hivit(
    arch: ArchSpec, img_size: int, seed: int, key: str, drop_path_rate: float = 0.0
) -> nn.Module:
    """A fresh :class:`HiViT` of ``arch`` (its own init under the caller's forked RNG)."""
    return HiViT(
        img_size=img_size,
        patch_size=arch.patch_size,
        in_chans=arch.in_chans,
        embed_dim=arch.embed_dim,
        depths=arch.depths,
        num_heads=arch.num_heads,
        mlp_ratio=arch.mlp_ratio,
        stem_mlp_ratio=arch.stem_mlp_ratio,
        qkv_bias=arch.qkv_bias,
    )


# SARATR-X's encoder: HiViT-B (stem stages of 2 x 2 MLP blocks, 20 attention blocks)
register_preset(
    "hivit_base_patch16",
    ArchSpec("hivit", 16, 512, 20, 8, in_chans=3, class_token=False, depths=(2, 2, 20)),
)
SARATRX_RULE = (
    "pretraining file {'model': HiViT-MAE state dict, 'optimizer', 'epoch', 'scaler', 'args'}"
    " ('module.' stripped); HiViT geometry inferred (heads: standard widths or --arch heads=H);"
    " norm.*, mask_token, decoder_*, sarfeature*, relative-position tables ignored;"
    " absolute_pos_embed interpolated (with a warning) at another --img-size"
)


@zoo_backbone("saratrx", aliases=("saratr-x", "saratr_x"))
def saratrx_spec() -> BackboneSpec:
    """SARATR-X's HiViT-B: the mean main-stage token into a fresh ``fc_norm``."""
    return BackboneSpec(
        name="saratrx",
        description="SARATR-X: HiViT-B MAE on SAR gradient-feature targets (186 K chips)",
        family="hivit",
        default_arch="hivit_base_patch16",
        checkpoint_format=SARATRX_RULE,
        expected_file="saratrx.pth",
        pooling="avg",
        allowed_missing=("fc_norm.*",),
        ignore_unexpected=(
            *MAE_EXTRA_KEYS,
            "sarfeature*",
            "blocks.*.attn.relative_position_*",
            "relative_position_index",
        ),
        accepts=("hivit",),
        input_adapter="grey3",
        feature="fc_norm (fresh) of the mean main-stage token (SARATR-X MIM_linear head input)",
        sources=(
            WeightSource("hf", "waterdisappear/SARATR-X", note="HiViT-B checkpoint"),
            WeightSource("baidu", "https://pan.baidu.com/s/1EuTo0WCbb69F_bGV6Iwd8A?pwd=7b3u"),
        ),
    )
