"""The backbone registry: the SAR-JEPA release's ten weight files, ``random`` and ``timm:<name>``.

Each :class:`BackboneSpec` states its default architecture, its checkpoint format rule, the file
name looked up under ``$SARFEWSHOT_WEIGHTS``, the keys allowed to be missing and the model
families its checkpoints may hold (``accepts``). Which ViT a file holds is decided from its keys
(see :func:`sarfewshot.models.checkpoint.detect_family`): an iRPE table means the iRPE ViT, else an
absolute ``pos_embed`` means a plain timm ViT. A file of a family the name does not accept is
refused unless ``--arch`` says what to build, so a row labelled ``sarjepa`` is never a plain ViT
by accident. A spec's ``family`` is the default used when no checkpoint says otherwise (the
``random`` baseline, ``--arch`` presets, the listing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path

from torch import nn

from sarfewshot.errors import ConfigError, WeightsError
from sarfewshot.models.arch import ArchSpec, parse_arch
from sarfewshot.models.build import construct, load_into
from sarfewshot.models.checkpoint import (
    DEFAULT_PREFER,
    FAMILY_LABELS,
    RELEASE_EXTRA_KEYS,
    RELEASE_HINT,
    RELEASE_WHERE,
    detect_family,
    extract_state_dict,
    infer_arch,
    safe_load,
)
from sarfewshot.utils.io import PathLike, sha256_file
from sarfewshot.utils.registry import Registry

logger = logging.getLogger(__name__)

WEIGHTS_ENV = "SARFEWSHOT_WEIGHTS"
TIMM_PREFIX = "timm:"

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
    "'encoder' state dict ('module.' prefix), or one flat dict with encoder.* keys (EMA"
    " target_encoder.* and predictor.* ignored); plain ViT without class token, pos_embed"
    " interpolated; features = mean of the normed patch tokens"
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


BACKBONE_REGISTRY = Registry("backbone")


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
    # one flat state dict (this toolkit's pretraining) also holds the EMA copy and the predictor
    ignore_unexpected=(*RELEASE_EXTRA_KEYS, "target_encoder.*", "predictor.*"),
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


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec of a registered name or alias, or of ``timm:<model_name>``."""
    if name.lower().startswith(TIMM_PREFIX):
        return _timm_spec(name)
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
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"--weights {path}: file not found; {RELEASE_HINT}")
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
        f"folder holding it ({RELEASE_WHERE})"
    )


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
    }


ARCH_SOURCES = ("checkpoint", "arch", "name", "default")


def _pick_arch(
    spec: BackboneSpec, arch: str | None, state_dict: dict | None, path: Path | None
) -> tuple[ArchSpec, str]:
    chosen, source = _pick_geometry(spec, arch, state_dict, path)
    if spec.pooling == "avg" and chosen.family != "timm":
        chosen = dataclasses.replace(chosen, pool="avg")
    return chosen, source


def _pick_geometry(
    spec: BackboneSpec, arch: str | None, state_dict: dict | None, path: Path | None
) -> tuple[ArchSpec, str]:
    """The architecture to build and where it came from (one of :data:`ARCH_SOURCES`)."""
    if arch:
        return parse_arch(arch), "arch"
    if spec.default_arch.startswith(TIMM_PREFIX):
        return parse_arch(spec.default_arch), "name"  # a named timm model fixes its geometry
    if state_dict is None:
        return parse_arch(spec.default_arch), "default"
    check_family(spec, state_dict, path)
    return infer_arch(state_dict), "checkpoint"


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
    state_dict = digest = None
    if path is not None:
        digest = sha256_file(path)
        state_dict = extract_state_dict(safe_load(path), spec.prefer, source=path)
    arch_spec, arch_source = _pick_arch(spec, arch, state_dict, path)
    model = construct(arch_spec, img_size, seed, spec.name, drop_path_rate)
    report = None
    if state_dict is not None:
        report = load_into(
            model, state_dict, str(path), spec.allowed_missing, spec.ignore_unexpected, digest
        )
    else:
        logger.info("%s: random init (seed %d), no weights loaded", spec.name, seed)
    model.backbone_info = {
        "name": spec.name,
        "family": "irpe" if arch_spec.family == "irpe" else "timm",
        "arch": arch_spec.to_string(),
        "arch_source": arch_source,
        "img_size": img_size,
        "num_features": int(model.num_features),
        "weights": str(path) if path is not None else None,
        "weights_sha256": digest,
        "seed": seed if path is None else None,
        "load": report.counts() if report is not None else None,
    }
    return model
