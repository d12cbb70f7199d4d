"""The SAR-JEPA release and its baselines: the iRPE ViT family and the release's weight files.

The release's pretraining files hold the iRPE ViT (:class:`~sarfewshot.models.vit_irpe.IRPEViT`,
recognised by its ``blocks.0.attn.rpe_k`` tables) under ``model`` with a ``module.`` prefix; its
MAE, LoMaR and FG-MAE baselines are plain ViTs (read by the plain-ViT family of
:mod:`~sarfewshot.models.zoo.timm`). ``random`` is the untrained iRPE ViT-B/16. The weights'
whereabouts are in ``../shared/spec/SARJEPA.md`` and ``sarfewshot backbones``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sarfewshot.errors import WeightsError
from sarfewshot.models.arch import ArchSpec
from sarfewshot.models.checkpoint import RELEASE_URL, RELEASE_WHERE
from sarfewshot.models.family import family
from sarfewshot.models.geometry import common_geometry, need
from sarfewshot.models.hub import WeightSource
from sarfewshot.models.registry import BACKBONE_REGISTRY, BackboneSpec
from sarfewshot.models.vit_irpe import IRPEViT
from sarfewshot.utils.seeding import torch_generator

RPE_TABLE_KEY = "blocks.0.attn.rpe_k.lookup_table_weight"
IRPE_RULE = (
    "release pretraining file {'model': state dict ('module.' prefix), 'epoch', 'args'} or a bare"
    " state dict; iRPE table -> iRPE ViT, geometry inferred; pos_embed, mask_token,"
    " encoder_pred.*, decoder_*, sarfeature* ignored"
)
PLAIN_RULE = (
    "'model' / 'state_dict' / bare state dict; an iRPE table -> iRPE ViT, else a plain timm ViT"
    " whose absolute pos_embed is interpolated to the image grid; class token feature"
)
# The SAR-JEPA release (every baseline's weights); its README links the BaiduYun folder.
RELEASE_SOURCES = (
    WeightSource("kaggle", "liweijie19/sar-jepa", note="SAR-JEPA authors"),
    WeightSource("url", RELEASE_URL, note="BaiduYun link in the README, all baselines"),
    WeightSource("hf", "kiki-orb/phi-JEPA", note="rehost under weights/; pick the method's file"),
)


def infer_irpe_arch(state_dict: Mapping[str, torch.Tensor], heads: int | None = None) -> dict:
    """Geometry of an iRPE ViT from its (prefix-stripped) state dict.

    The head count is ``embed_dim / head_dim`` with ``head_dim`` read from the iRPE table shape
    ``(1, head_dim, 50)`` (``heads``, when given, replaces it). Returns keyword arguments of
    :class:`IRPEViT`, ``global_pool`` included (``token`` with a class token, else ``avg``).
    """
    geo = common_geometry(state_dict)
    table = need(state_dict, RPE_TABLE_KEY, "head count")
    head_dim = int(table.shape[1])
    if table.ndim != 3 or head_dim == 0 or geo["embed_dim"] % head_dim:
        raise WeightsError(
            f"{RPE_TABLE_KEY} has shape {tuple(table.shape)}, which does not divide embed dim "
            f"{geo['embed_dim']} into heads"
        )
    geo["num_heads"] = heads if heads is not None else geo["embed_dim"] // head_dim
    geo["global_pool"] = "token" if geo["class_token"] else "avg"
    return geo


@family(
    "irpe",
    label="the iRPE ViT of the SAR-JEPA release (blocks.N.attn.rpe_k tables)",
    # first: the release's iRPE files also carry an unused absolute pos_embed
    detect=lambda sd: RPE_TABLE_KEY in sd,
    order=0,
    infer=infer_irpe_arch,
    record_family="irpe",
    lora_targets=("qkv", "proj"),
)
def construct_irpe(
    arch: ArchSpec, img_size: int, seed: int, key: str, drop_path_rate: float = 0.0
) -> nn.Module:
    """A fresh iRPE ViT, initialised from a generator owned by ``(seed, key)``."""
    model = IRPEViT(img_size=img_size, drop_path_rate=drop_path_rate, **arch.irpe_kwargs())
    model.init_weights(torch_generator(seed, "backbone", key))
    return model


def _release(
    name: str, description: str, family: str = "irpe", aliases: tuple[str, ...] = (), **kw
) -> BackboneSpec:
    # The plain-ViT baselines take either family: the release's files are plain ViTs, while
    # this toolkit's pretraining of LoMaR and FG-MAE (method hog) writes the iRPE ViT.
    defaults = {
        "irpe": ("irpe_vit_base_patch16", IRPE_RULE, ("irpe",)),
        "timm": ("vit_base_patch16", PLAIN_RULE, ("vit", "irpe")),
    }
    arch, rule, accepts = defaults[family]
    fields = {
        "default_arch": arch,
        "checkpoint_format": rule,
        "expected_file": f"{name}.pth",
        "accepts": accepts,
        "sources": RELEASE_SOURCES,
        "where": RELEASE_WHERE,
    }
    fields.update(kw)
    spec = BackboneSpec(name=name, description=description, family=family, **fields)
    return BACKBONE_REGISTRY.register(name, aliases=aliases)(spec)


_release("sarjepa", "SAR-JEPA: local masked prediction of multi-scale SAR gradient features")
_release("sarjepa_gauss", "SAR-JEPA with the Gaussian-kernel gradient target")
_release("mae", "MAE: pixel targets, random 75% masking", family="timm")
_release("lomar", "LoMaR: pixel targets, local windows", family="timm")
_release("lomar_sar", "LoMaR on log-amplitude pixels ln(x + 0.01) (sarfewshot pretrain lomar_sar)")
_release("fgmae", "FG-MAE: HOG targets (MaskFeat style)", family="timm")
# What `sarfewshot pretrain --method hog` writes: the HOG target on SAR-JEPA's local windows and
# iRPE ViT (the release's FG-MAE is a plain ViT, hence its own entry).
_release("hog", "local masked prediction of HOG (9 bins, 8x8 cells, L2-normalised)")
_release("lowpass", "local masked prediction of a low-pass filtered image")
_release("sar_hog", "local masked prediction of SAR-HOG (ratio-gradient HOG)")
_release("pgga", "release baseline 'PGGA' (local masked prediction, iRPE ViT-B/16)")
BACKBONE_REGISTRY.register("random", aliases=("none", "scratch"))(
    BackboneSpec(
        name="random",
        description="iRPE ViT-B/16 with seeded random init (no pretraining)",
        family="irpe",
        default_arch="irpe_vit_base_patch16",
        checkpoint_format="takes no weights",
        expected_file=None,
        needs_weights=False,
    )
)
