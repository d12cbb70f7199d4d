"""The backbone registry: the SAR-JEPA release's weight files, the SAR backbone zoo (SARATR-X,
SARMAE, I-JEPA-format files), ``random`` and ``timm:<name>``.

Each :class:`BackboneSpec` states its default architecture, its checkpoint format rule, the file
name looked up under ``$SARFEWSHOT_WEIGHTS``, the keys allowed to be missing and the model
families its checkpoints may hold (``accepts``). Which ViT a file holds is decided from its keys
(see :func:`sarfewshot.models.checkpoint.detect_family`): an iRPE table means the iRPE ViT, else an
absolute ``pos_embed`` means a plain timm ViT. A file of a family the name does not accept is
refused unless ``--arch`` says what to build, so a row labelled ``sarjepa`` is never a plain ViT
by accident. A spec's ``family`` is the default used when no checkpoint says otherwise (the
``random`` baseline, ``--arch`` presets, the listing).

A model trained on 3-channel images keeps its 3-channel patch embedding when its spec names an
``input_adapter``: the wrapper then copies the grey chip to 3 channels (and normalises it, for
``grey3_imagenet``) inside the backbone, and ``backbone_info["input"]`` records it. Weights may be
``hf://OWNER/REPO/PATH[@REVISION]`` (:mod:`sarfewshot.models.hub`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path

from torch import nn

from sarfewshot.errors import ConfigError, WeightsError
from sarfewshot.models import hub
from sarfewshot.models.arch import (
    ArchSpec,
    apply_partial_arch,
    is_partial_arch,
    parse_arch,
    parse_partial_arch,
)
from sarfewshot.models.build import AdaptedBackbone, InputAdapter, construct, load_into
from sarfewshot.models.checkpoint import (
    DEFAULT_PREFER,
    FAMILY_LABELS,
    RELEASE_EXTRA_KEYS,
    RELEASE_HINT,
    RELEASE_URL,
    RELEASE_WHERE,
    detect_family,
    extract_state_dict,
    infer_arch,
    safe_load,
    unwrap_sarmae,
)
from sarfewshot.models.hub import WeightSource
from sarfewshot.utils.io import PathLike, sha256_file
from sarfewshot.utils.registry import Registry

logger = logging.getLogger(__name__)

WEIGHTS_ENV = "SARFEWSHOT_WEIGHTS"
TIMM_PREFIX = "timm:"
TORCHGEO_PREFIX = "torchgeo:"

IRPE_RULE = (
    "release pretraining file {'model': state dict ('module.' prefix), 'epoch', 'args'} or a bare"
    " state dict; iRPE table -> iRPE ViT, geometry inferred; pos_embed, mask_token,"
    " encoder_pred.*, decoder_*, sarfeature* ignored"
)
PLAIN_RULE = (
    "'model' / 'state_dict' / bare state dict; an iRPE table -> iRPE ViT, else a plain timm ViT"
    " whose absolute pos_embed is interpolated to the image grid; class token feature"
)
IJEPA_RULE = (
    "I-JEPA file {'encoder', 'predictor', 'target_encoder', ...}: 'target_encoder' with 'module.'"
    " stripped; or one flat dict with encoder.* keys (target_encoder.* and predictor.* ignored);"
    " plain ViT without class token, pos_embed interpolated; features = mean of the normed"
    " patch tokens; a 3-channel file gets the chip copied to 3 channels + ImageNet normalisation"
)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build and load one backbone name."""

    name: str
    description: str
    family: str  # "irpe" | "timm": the default when no checkpoint decides
    default_arch: str
    checkpoint_format: str
    expected_file: str | None
    pooling: str = "token"  # "token" (class token) | "avg" (mean of patch tokens)
    allowed_missing: tuple[str, ...] = ()
    ignore_unexpected: tuple[str, ...] = RELEASE_EXTRA_KEYS
    prefer: tuple[str, ...] = DEFAULT_PREFER
    needs_weights: bool = True
    # checkpoint families (detect_family) loadable without --arch; others are refused
    accepts: tuple[str, ...] = ("irpe",)
    # for 3-channel checkpoints: build.INPUT_ADAPTERS kind; None sums the patch embedding to 1
    input_adapter: str | None = None
    fc_norm: bool = False  # plain ViTs: mean of un-normed patch tokens -> fresh LayerNorm
    feature: str = ""  # the feature definition, from the model's own downstream code
    sources: tuple[WeightSource, ...] = ()  # known public places of the weights, first = best


BACKBONE_REGISTRY = Registry("backbone")

# The SAR-JEPA release (every baseline's weights); its README links the BaiduYun folder.
RELEASE_SOURCES = (
    WeightSource("kaggle", "liweijie19/sar-jepa", note="SAR-JEPA authors"),
    WeightSource("url", RELEASE_URL, note="BaiduYun link in the README, all baselines"),
    WeightSource("hf", "kiki-orb/phi-JEPA", note="rehost under weights/; pick the method's file"),
)


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
_release(
    "ijepa",
    "I-JEPA: latent targets from an EMA encoder (no class token, mean-pooled)",
    family="timm",
    default_arch="vit_base_patch16_nocls",
    checkpoint_format=IJEPA_RULE,
    pooling="avg",
    accepts=("vit",),
    # an I-JEPA file's target_encoder is the encoder the paper evaluates
    prefer=("target_encoder", "model", "state_dict", "encoder"),
    # one flat state dict (this toolkit's pretraining) also holds the EMA copy and the predictor
    ignore_unexpected=(*RELEASE_EXTRA_KEYS, "target_encoder.*", "predictor.*"),
    input_adapter="grey3_imagenet",
    feature="mean of the target encoder's normed output tokens (I-JEPA paper, linear probe)",
    sources=(
        WeightSource(
            "hf", "kiki-orb/phi-JEPA", "weights/ijepa_vitb16_e100.pth.tar", note="phi-JEPA, 3 ch"
        ),
        *RELEASE_SOURCES[:2],
    ),
)
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


def zoo_backbone(name: str, aliases: tuple[str, ...] = ()):
    """Decorator: register the :class:`BackboneSpec` a factory returns under ``name``."""

    def deco(factory):
        BACKBONE_REGISTRY.register(name, aliases=aliases)(factory())
        return factory

    return deco


SARATRX_RULE = (
    "pretraining file {'model': HiViT-MAE state dict, 'optimizer', 'epoch', 'scaler', 'args'}"
    " ('module.' stripped); HiViT geometry inferred (heads: standard widths or --arch heads=H);"
    " norm.*, mask_token, decoder_*, sarfeature*, relative-position tables ignored"
)
SARMAE_RULE = (
    "pretraining file {'model': {sar_encoder.*, optical_encoder.*, sar_alignment_ffn.*}, ...}:"
    " the sar_encoder.* ViT loaded (as SARMAE's load_sar_pretrained does), the rest dropped;"
    " ViT-B or ViT-L geometry inferred; norm.*, mask_token, decoder_* ignored"
)
_MAE_EXTRAS = ("norm.*", "mask_token", "decoder_*", "head.*")


@zoo_backbone("saratrx", aliases=("saratr-x", "saratr_x"))
def _saratrx() -> BackboneSpec:
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
            *_MAE_EXTRAS,
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


@zoo_backbone("sarmae")
def _sarmae() -> BackboneSpec:
    return BackboneSpec(
        name="sarmae",
        description="SARMAE: noise-aware MAE with optical alignment (SAR-1M); ViT-B or ViT-L",
        family="timm",
        default_arch="vit_base_patch16",
        checkpoint_format=SARMAE_RULE,
        expected_file="sarmae.pth",
        pooling="avg",
        allowed_missing=("fc_norm.*",),
        ignore_unexpected=_MAE_EXTRAS,
        accepts=("sarmae",),
        input_adapter="grey3",
        fc_norm=True,
        feature="fc_norm (fresh) of the mean patch token, class token excluded (main_finetune)",
        sources=(
            WeightSource("hf", "Wenquandan777/SARMAE", "SARMAE_vitb_checkpoint-last", note="ViT-B"),
            WeightSource("hf", "Wenquandan777/SARMAE", "SARMAE_vitl_checkpoint-last", note="ViT-L"),
            WeightSource("baidu", "https://pan.baidu.com/s/1DOsZolLZ--gMuNUgUXeyVg?pwd=0717"),
        ),
    )


def _timm_spec(name: str) -> BackboneSpec:
    model = name[len(TIMM_PREFIX) :].strip()
    if not model:
        raise ConfigError(
            f"backbone {name!r}: give a timm model name, e.g. timm:vit_small_patch16_224"
        )
    return BackboneSpec(
        name=f"{TIMM_PREFIX}{model}",
        description=f"timm {model} (in_chans=1, no head); random init unless --weights",
        family="timm",
        default_arch=f"timm:{model}",
        checkpoint_format="'model' / 'state_dict' / bare timm state dict; pos_embed interpolated",
        expected_file=None,
        needs_weights=False,
        accepts=("vit",),
    )


def _torchgeo_spec(name: str) -> BackboneSpec:
    body = name[len(TORCHGEO_PREFIX) :].strip()
    return BackboneSpec(
        name=f"{TORCHGEO_PREFIX}{body}",
        description=f"torchgeo weights {body} (SAR bands; chip mapped to dB per channel)",
        family="torchgeo",
        default_arch=f"{TORCHGEO_PREFIX}{body}",
        checkpoint_format="torchgeo's state dict of those weights (--weights PATH, else torchgeo)",
        expected_file=None,
        needs_weights=False,
        accepts=(),
    )


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec of a registered name or alias, ``timm:<model_name>`` or ``torchgeo:<weights>``."""
    if name.lower().startswith(TIMM_PREFIX):
        return _timm_spec(name)
    if name.lower().startswith(TORCHGEO_PREFIX):
        return _torchgeo_spec(name)
    return BACKBONE_REGISTRY.get(name)


def list_backbones() -> list[str]:
    """Registered backbone names (any ``timm:<model_name>`` is accepted as well)."""
    return BACKBONE_REGISTRY.list()


def resolve_weights_dir(weights_dir: PathLike | None = None) -> Path | None:
    """``weights_dir`` if given, else ``$SARFEWSHOT_WEIGHTS``, else None."""
    if weights_dir:
        return Path(weights_dir).expanduser()
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    return Path(env).expanduser() if env else None


def resolve_weights(
    spec: BackboneSpec, weights: PathLike | None = None, weights_dir: PathLike | None = None
) -> Path | None:
    """The checkpoint to load for ``spec``: ``weights``, else ``<weights dir>/<expected file>``.

    Returns None when the backbone may run without weights (``random``, ``timm:`` names).

    Raises:
        WeightsError: an explicit file is missing, or a name that needs weights has none.
        ConfigError: weights were given to ``random``.
    """
    if weights:
        if spec.name == "random":
            raise ConfigError("backbone 'random' takes no weights; drop --weights / INIT_WEIGHTS")
        if hub.is_hf_uri(weights):
            return hub.hf_download(str(weights))
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"--weights {path}: file not found; {_where(spec)}")
        return path
    folder = resolve_weights_dir(weights_dir)
    if folder is not None and spec.expected_file and (folder / spec.expected_file).is_file():
        return folder / spec.expected_file
    if not spec.needs_weights:
        return None
    looked = f"{folder / spec.expected_file}" if folder is not None else f"${WEIGHTS_ENV} (unset)"
    raise WeightsError(
        f"backbone {spec.name!r} needs its weights file {spec.expected_file!r} (looked in "
        f"{looked}); pass --weights PATH (config MODEL.INIT_WEIGHTS) or set ${WEIGHTS_ENV} to the "
        f"folder holding it ({RELEASE_WHERE if spec.sources == RELEASE_SOURCES else _where(spec)})"
    )


def _where(spec: BackboneSpec) -> str:
    if not spec.sources or spec.sources == RELEASE_SOURCES:
        return RELEASE_HINT
    listed = "; ".join(src.describe() for src in spec.sources)
    return f"{spec.name} weights: {listed}; pass --weights PATH or hf://OWNER/REPO/PATH"


def backbone_status(name: str, weights_dir: PathLike | None = None) -> dict:
    """Listing row for ``name``: family, default arch, expected file and whether it was found."""
    spec = get_backbone_spec(name)
    folder = resolve_weights_dir(weights_dir)
    path = folder / spec.expected_file if folder is not None and spec.expected_file else None
    found = bool(path is not None and path.is_file())
    return {
        "name": spec.name,
        "family": spec.family,
        "arch": spec.default_arch,
        "pooling": spec.pooling,
        "expected_file": spec.expected_file,
        "accepts": list(spec.accepts),
        "needs_weights": spec.needs_weights,
        "path": str(path) if path is not None else None,
        "found": found,
        "sources": [src.describe() for src in spec.sources],
    }


ARCH_SOURCES = ("checkpoint", "arch", "name", "default")


def _pick_arch(
    spec: BackboneSpec, arch: str | None, state_dict: dict | None, path: Path | None
) -> tuple[ArchSpec, str]:
    chosen, source = _pick_geometry(spec, arch, state_dict, path)
    if spec.pooling == "avg" and chosen.family not in ("timm", "hivit"):
        chosen = dataclasses.replace(chosen, pool="avg")
    if spec.fc_norm and chosen.family == "vit":
        chosen = dataclasses.replace(chosen, fc_norm=True)
    return chosen, source


def _pick_geometry(
    spec: BackboneSpec, arch: str | None, state_dict: dict | None, path: Path | None
) -> tuple[ArchSpec, str]:
    """The architecture to build and where it came from (one of :data:`ARCH_SOURCES`).

    A partial ``arch`` (``"heads=3"``) fills in only its fields: over the checkpoint's inferred
    geometry when there is one, else over the name's default.
    """
    partial = parse_partial_arch(arch) if is_partial_arch(arch) else None
    if arch and partial is None:
        return parse_arch(arch), "arch"
    if spec.default_arch.startswith(TIMM_PREFIX):
        if partial is not None:
            raise ConfigError(f"--arch {arch}: {spec.name} is a named timm model; give no fields")
        return parse_arch(spec.default_arch), "name"  # a named timm model fixes its geometry
    if state_dict is None:
        base = parse_arch(spec.default_arch)
        if partial is None:
            return base, "default"
        return apply_partial_arch(base, partial, arch or ""), "arch"
    check_family(spec, state_dict, path)
    chans = 3 if spec.input_adapter else 1
    heads = partial.get("num_heads") if partial else None
    inferred = infer_arch(state_dict, in_chans=chans, heads=heads)
    if partial:
        inferred = apply_partial_arch(inferred, partial, arch or "")
    return inferred, "checkpoint"


def _families_text(families: tuple[str, ...]) -> str:
    return " or ".join(FAMILY_LABELS[f] for f in families)


def check_family(spec: BackboneSpec, state_dict: dict, path: PathLike | None) -> None:
    """Refuse a checkpoint whose model family (from its keys) ``spec`` does not accept.

    Raises:
        WeightsError: naming the file, the family the backbone name expects and the one found,
            with the ``--arch`` that would build the file's architecture when it can be told.
    """
    found = detect_family(state_dict)
    if found in spec.accepts:
        return
    hint = "pass --arch with the architecture to build"
    if found is not None:
        with contextlib.suppress(WeightsError):  # an odd width keeps the generic hint
            hint = f"pass --arch {infer_arch(state_dict).to_string()} to build it anyway"
    raise WeightsError(
        f"{path}: backbone {spec.name!r} expects {_families_text(spec.accepts)}, but the file "
        f"holds {FAMILY_LABELS[found]} (detected from its keys); refusing to build another model "
        f"under this name. Use the backbone name of the file's model, or {hint}"
    )


def describe_arch(info: dict) -> str:
    """One line: a backbone's resolved architecture and where it came from.

    ``info`` is a ``backbone_info`` dict (``name``, ``arch``, ``arch_source``, ``weights``).
    """
    source = info.get("arch_source")
    origin = {
        "checkpoint": f"inferred from the checkpoint {info.get('weights')}",
        "arch": "given by --arch / MODEL.BACKBONE.ARCH",
        "name": f"the timm model named by {info.get('registry_name') or info.get('name')}",
        "default": "the registry default for a weight-less backbone",
    }.get(source, f"source {source!r}")
    if source == "checkpoint" and info.get("arch_given"):
        origin += f", with --arch {info['arch_given']}"
    return f"{info.get('name')}: arch {info.get('arch')} ({origin})"


def build_backbone(
    name: str,
    weights: PathLike | None = None,
    arch: str | None = None,
    img_size: int = 224,
    seed: int = 0,
    weights_dir: PathLike | None = None,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """Build a backbone by name, load its weights and describe it in ``backbone_info``.

    Args:
        name: a registered name (:func:`list_backbones`) or ``timm:<model_name>``.
        weights: checkpoint path; default ``$SARFEWSHOT_WEIGHTS/<expected file>``.
        arch: preset or spec string (:mod:`sarfewshot.models.arch`); None infers the geometry
            from the checkpoint (or uses the name's default when there is none). Only with an
            explicit ``arch`` does a name load a checkpoint of a family it does not accept.
        img_size: input side in pixels (sets the grid of plain ViTs' position embeddings).
        seed: seed of the random init (used as is by ``random`` and weightless timm models).
        weights_dir: overrides ``$SARFEWSHOT_WEIGHTS``.
        drop_path_rate: stochastic depth of the iRPE ViT (fine-tuning).

    Returns:
        A module with ``forward_features(x) -> (B, D)``, ``num_features`` and ``backbone_info``
        (``arch_source``: ``checkpoint``, ``arch``, ``name`` or ``default``; see
        :func:`describe_arch`).

    Raises:
        WeightsError: the weights are missing, unsafe or do not fit, or the checkpoint holds a
            model family the name does not accept (:func:`check_family`) and no ``arch`` is given.
    """
    spec = get_backbone_spec(name)
    path = resolve_weights(spec, weights, weights_dir)
    if spec.family == "torchgeo":
        return _build_torchgeo(spec, path, img_size, seed)
    state_dict = digest = None
    dropped = 0
    if path is not None:
        digest = sha256_file(path)
        if hub.is_hf_uri(weights):
            hub.check_sha256(path, digest, hub.pinned_sha256(spec.sources, str(weights)), weights)
        state_dict = extract_state_dict(safe_load(path), spec.prefer, source=path)
    arch_spec, arch_source = _pick_arch(spec, arch, state_dict, path)
    if state_dict is not None and detect_family(state_dict) == "sarmae":
        inner = unwrap_sarmae(state_dict)
        dropped, state_dict = len(state_dict) - len(inner), inner
    model = construct(arch_spec, img_size, seed, spec.name, drop_path_rate)
    report = None
    if state_dict is not None:
        report = load_into(
            model, state_dict, str(path), spec.allowed_missing, spec.ignore_unexpected, digest
        )
    else:
        logger.info("%s: random init (seed %d), no weights loaded", spec.name, seed)
    adapter = None
    if spec.input_adapter and arch_spec.in_chans == 3:
        adapter = InputAdapter(spec.input_adapter)
        model = AdaptedBackbone(model, adapter)
    model.backbone_info = {
        "name": spec.name,
        "family": _info_family(arch_spec),
        "arch": arch_spec.to_string(),
        "arch_source": arch_source,
        "arch_given": arch if arch_source == "checkpoint" and arch else None,
        "img_size": img_size,
        "num_features": int(model.num_features),
        "weights": str(weights) if hub.is_hf_uri(weights) else (str(path) if path else None),
        "weights_path": str(path) if path is not None else None,
        "weights_sha256": digest,
        "seed": seed if path is None else None,
        "load": _load_counts(report, dropped),
        "input": adapter.describe() if adapter is not None else {"kind": "grey1", "channels": 1},
        "feature": spec.feature or _default_feature(arch_spec),
    }
    return model


def _build_torchgeo(spec: BackboneSpec, path: Path | None, img_size: int, seed: int) -> nn.Module:
    from sarfewshot.models.torchgeo_backbones import build_torchgeo

    model, extra = build_torchgeo(spec.name, path, seed)
    model.backbone_info = {
        "name": spec.name,
        "family": "torchgeo",
        "arch": spec.default_arch,
        "arch_source": "name",
        "img_size": img_size,
        "num_features": int(model.num_features),
        "weights": str(path) if path is not None else spec.name,
        "weights_sha256": sha256_file(path) if path is not None else None,
        "seed": None,
        **extra,
    }
    return model


def _info_family(arch: ArchSpec) -> str:
    return {"irpe": "irpe", "hivit": "hivit"}.get(arch.family, "timm")


def _load_counts(report, dropped: int) -> dict | None:
    if report is None:
        return None
    counts = report.counts()
    if dropped:
        counts["dropped_other_modules"] = dropped  # SARMAE's optical / alignment keys
    return counts


def _default_feature(arch: ArchSpec) -> str:
    if arch.global_pool == "avg":
        return "mean of the normed patch tokens"
    return "class token after the final norm"
