"""The pretraining methods: a registry of builders ``(cfg, init_generator) -> nn.Module``.

Each method is a target plus a masking rule on shared machinery (:mod:`.model`):

======================  =====================  =================================================
method                  masking                target
======================  =====================  =================================================
``sarjepa``             local windows          multi-scale GF, box kernel (spec section 3)
``sarjepa_gauss``       local windows          multi-scale GF, Gaussian kernel
``lomar``               local windows          pixels (``TARGET.NORM_PIX`` optional)
``lomar_sar``           local windows          log-amplitude pixels ``ln(x + 0.01)``
``lowpass``             local windows          Gaussian low-pass pixels (``TARGET.LOWPASS_SIGMA``)
``hog``                 local windows          HOG of the pixels (MaskFeat / FG-MAE style)
``sar_hog``             local windows          HOG of the ratio gradients (``SAR_HOG_RADII``)
``mae``                 random 75 %            pixels; plain ViT, visible-token encoder
``ijepa``               multi-block            EMA target-encoder features (latent)
======================  =====================  =================================================

The iRPE methods read ``MODEL.INIT`` (``xavier``: the release's initialisation;
``trunc_normal``: the toolkit's) and ``MASK.WINDOW_DRAW`` (``distinct``: the release's window
positions; ``uniform``); ``mae`` and ``ijepa`` keep their own MAE / I-JEPA-style initialisation.
The iRPE methods accept ``MASK.TYPE random`` (the whole grid with a random share replaced by the
mask token). ``lomar_sar`` is this project's reading of the release's "LoMaR-SAR" row: LoMaR's
pixel reconstruction made speckle-aware by working on log-amplitude (multiplicative speckle
becomes additive), which the release's table does not otherwise define.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from yacs.config import CfgNode

from sarfewshot.errors import ConfigError
from sarfewshot.utils.registry import Registry

PRETRAIN_METHODS = Registry("pretraining method")

Builder = Callable[[CfgNode, "torch.Generator | None"], nn.Module]


def list_methods() -> list[str]:
    """Names of every registered pretraining method."""
    return PRETRAIN_METHODS.list()


def get_method(name: str) -> Builder:
    """The builder registered as ``name`` (UnknownNameError lists the choices)."""
    return PRETRAIN_METHODS.get(name)


def _encoder_kwargs(cfg: CfgNode) -> dict[str, Any]:
    m = cfg.MODEL
    return {
        "img_size": cfg.INPUT.SIZE,
        "patch_size": m.PATCH_SIZE,
        "embed_dim": m.EMBED_DIM,
        "depth": m.DEPTH,
        "num_heads": m.NUM_HEADS,
        "mlp_ratio": m.MLP_RATIO,
        "drop_path": m.DROP_PATH,
        "pred_dim": m.PRED_DIM,
        "pred_depth": m.PRED_DEPTH,
        "pred_heads": m.PRED_HEADS,
    }


def _ratio(cfg: CfgNode, default: float) -> float:
    return default if cfg.MASK.RATIO < 0 else float(cfg.MASK.RATIO)


def _local_model(cfg: CfgNode, gen, kind: str, opts: dict[str, Any]) -> nn.Module:
    from sarfewshot.pretrain.model import LocalMaskedModel

    mask_type = cfg.MASK.TYPE or "local"
    default_ratio = 0.8 if mask_type == "local" else 0.75
    return LocalMaskedModel(
        **_encoder_kwargs(cfg),
        target_kind=kind,
        target_opts=opts,
        mask_type=mask_type,
        window=cfg.MASK.WINDOW,
        num_windows=cfg.MASK.NUM_WINDOWS,
        mask_ratio=_ratio(cfg, default_ratio),
        window_draw=cfg.MASK.WINDOW_DRAW,
        init=cfg.MODEL.INIT,
        init_generator=gen,
    )


def _gf_opts(cfg: CfgNode) -> dict[str, Any]:
    return {"radii": tuple(int(r) for r in cfg.TARGET.RADII)}


def _hog_opts(cfg: CfgNode) -> dict[str, Any]:
    return {"nbins": cfg.TARGET.HOG_BINS, "cell": cfg.TARGET.HOG_CELL}


@PRETRAIN_METHODS.register("sarjepa", aliases=("sar_jepa", "sar-jepa"))
def sarjepa(cfg: CfgNode, gen=None) -> nn.Module:
    """SAR-JEPA: local windows, multi-scale gradient (GF) target with the box kernel."""
    return _local_model(cfg, gen, "gf", _gf_opts(cfg))


@PRETRAIN_METHODS.register("sarjepa_gauss")
def sarjepa_gauss(cfg: CfgNode, gen=None) -> nn.Module:
    """SAR-JEPA with the Gaussian-kernel gradient target."""
    return _local_model(cfg, gen, "gf_gauss", _gf_opts(cfg))


@PRETRAIN_METHODS.register("lomar")
def lomar(cfg: CfgNode, gen=None) -> nn.Module:
    """LoMaR: local windows, pixel target."""
    return _local_model(cfg, gen, "pixel", {"normalize": cfg.TARGET.NORM_PIX})


@PRETRAIN_METHODS.register("lomar_sar")
def lomar_sar(cfg: CfgNode, gen=None) -> nn.Module:
    """LoMaR-SAR: local windows, log-amplitude target (``TARGET.NORM_PIX`` optional)."""
    return _local_model(cfg, gen, "log_pixel", {"normalize": cfg.TARGET.NORM_PIX})


@PRETRAIN_METHODS.register("lowpass", aliases=("low_pass",))
def lowpass(cfg: CfgNode, gen=None) -> nn.Module:
    """Local windows, Gaussian low-pass filtered pixels."""
    return _local_model(cfg, gen, "lowpass", {"sigma": cfg.TARGET.LOWPASS_SIGMA})


@PRETRAIN_METHODS.register("hog", aliases=("fgmae", "fg_mae"))
def hog(cfg: CfgNode, gen=None) -> nn.Module:
    """HOG target (MaskFeat / FG-MAE style) on the local-window machinery."""
    return _local_model(cfg, gen, "hog", _hog_opts(cfg))


@PRETRAIN_METHODS.register("sar_hog")
def sar_hog(cfg: CfgNode, gen=None) -> nn.Module:
    """SAR-HOG target (HOG of the ratio gradients) on the local-window machinery."""
    opts = {**_hog_opts(cfg), "radii": tuple(int(r) for r in cfg.TARGET.SAR_HOG_RADII)}
    return _local_model(cfg, gen, "sar_hog", opts)


def _only(cfg: CfgNode, allowed: str, method: str) -> None:
    if cfg.MASK.TYPE not in ("", allowed):
        raise ConfigError(f"MASK.TYPE {cfg.MASK.TYPE!r} is not available for {method}")


@PRETRAIN_METHODS.register("mae")
def mae(cfg: CfgNode, gen=None) -> nn.Module:
    """MAE: random 75 % masking, plain ViT encoder on visible tokens, pixel decoder."""
    from sarfewshot.pretrain.plain import MAEModel

    _only(cfg, "random", "mae")
    return MAEModel(
        **_encoder_kwargs(cfg),
        target_kind="pixel",
        target_opts={"normalize": cfg.TARGET.NORM_PIX},
        mask_ratio=_ratio(cfg, 0.75),
        init_generator=gen,
    )


@PRETRAIN_METHODS.register("ijepa", aliases=("i_jepa", "i-jepa"))
def ijepa(cfg: CfgNode, gen=None) -> nn.Module:
    """I-JEPA: multi-block masks, EMA target encoder, latent targets."""
    from sarfewshot.pretrain.plain import IJEPAModel

    _only(cfg, "multiblock", "ijepa")
    return IJEPAModel(
        **_encoder_kwargs(cfg),
        num_targets=cfg.MASK.NUM_TARGETS,
        target_scale=tuple(cfg.MASK.TARGET_SCALE),
        target_aspect=tuple(cfg.MASK.TARGET_ASPECT),
        context_scale=tuple(cfg.MASK.CONTEXT_SCALE),
        ema=tuple(cfg.IJEPA.EMA),
        init_generator=gen,
    )


# methods whose encoder is a plain ViT with pos_embed (the others use the iRPE ViT)
PLAIN_VIT_METHODS = {"mae": True, "ijepa": False}  # name -> has a class token


def encoder_arch(cfg: CfgNode) -> str:
    """The encoder of ``cfg`` as a ``sarfewshot.models.arch`` spec string.

    ``irpe:patch=..,dim=..,depth=..,heads=..`` for the iRPE methods, ``vit:...`` for MAE and
    ``vit:...,cls=0`` for I-JEPA: what ``build_backbone(..., arch=...)`` accepts.
    """
    m = cfg.MODEL
    name = PRETRAIN_METHODS.canonical(cfg.METHOD)
    family = "vit" if name in PLAIN_VIT_METHODS else "irpe"
    text = f"{family}:patch={m.PATCH_SIZE},dim={m.EMBED_DIM},depth={m.DEPTH},heads={m.NUM_HEADS}"
    if m.MLP_RATIO != 4.0:
        text += f",mlp={m.MLP_RATIO:g}"
    return text + (",cls=0" if not PLAIN_VIT_METHODS.get(name, True) else "")


def build_pretrain_model(cfg: CfgNode) -> nn.Module:
    """The model of ``cfg.METHOD``, initialised reproducibly from ``cfg.SEED``.

    Module constructors (ours and timm's) draw a default init from torch's global generator; they
    run under a forked, seeded global generator so the caller's random state is untouched, then
    every weight is re-initialised from a generator seeded by ``(SEED, "pretrain-init")``.
    """
    from sarfewshot.utils.seeding import derive_seed, torch_generator

    builder = get_method(cfg.METHOD)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.SEED, "pretrain-init-global"))
        return builder(cfg, torch_generator(cfg.SEED, "pretrain-init"))
