"""``build_backbone``: a backbone name -> a loaded module, through the family hook tables.

The path of ``--weights`` from the command line to the loaded model:

1. :func:`~sarfewshot.models.registry.get_backbone_spec` (the name's spec) and
   :func:`~sarfewshot.models.registry.resolve_weights` (the file);
2. :func:`~sarfewshot.models.checkpoint.safe_load` and ``extract_state_dict`` (the state dict);
3. :func:`pick_arch`: ``--arch``, else the geometry the file's family infers, after the family
   (:func:`check_family`) and layout (:func:`~sarfewshot.models.family.check_file_format`)
   checks;
4. :func:`~sarfewshot.models.build.construct` and ``load_into`` (the family's constructor, then
   the checked load);
5. the spec's input adapter, and ``backbone_info`` for records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping

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
from sarfewshot.models.checkpoint import extract_state_dict, safe_load
from sarfewshot.models.family import (
    check_file_format,
    detect_family,
    family_label,
    get_family,
)
from sarfewshot.models.family import lora_targets as family_lora_targets
from sarfewshot.models.geometry import infer_arch
from sarfewshot.models.registry import (
    BackboneSpec,
    default_weights,
    get_backbone_spec,
    resolve_weights,
)
from sarfewshot.utils.io import PathLike, sha256_file

logger = logging.getLogger(__name__)

ARCH_SOURCES = ("checkpoint", "arch", "name", "default")


def pick_arch(
    spec: BackboneSpec,
    arch: str | None,
    state_dict: dict | None,
    path: Path | None,
    checkpoint: Mapping[str, Any] | None = None,
) -> tuple[ArchSpec, str]:
    """The architecture to build for ``spec`` and where it came from (:data:`ARCH_SOURCES`).

    The spec's ``pooling`` and ``fc_norm`` apply to the families whose readout they describe.
    """
    chosen, source = _pick_geometry(spec, arch, state_dict, path, checkpoint)
    family = get_family(chosen.family)
    if spec.pooling == "avg" and not family.own_readout:
        chosen = dataclasses.replace(chosen, pool="avg")
    if spec.fc_norm and family.fc_norm_option:
        chosen = dataclasses.replace(chosen, fc_norm=True)
    return chosen, source


def _pick_geometry(
    spec: BackboneSpec,
    arch: str | None,
    state_dict: dict | None,
    path: Path | None,
    checkpoint: Mapping[str, Any] | None,
) -> tuple[ArchSpec, str]:
    """A partial ``arch`` (``"heads=3"``) fills in only its fields: over the checkpoint's inferred
    geometry when there is one, else over the name's default."""
    partial = parse_partial_arch(arch) if is_partial_arch(arch) else None
    if arch and partial is None:
        return parse_arch(arch), "arch"
    if spec.fixed_arch:
        if partial is not None:
            raise ConfigError(f"--arch {arch}: {spec.name} is a named timm model; give no fields")
        return parse_arch(spec.default_arch), "name"  # a named model fixes its geometry
    if state_dict is None:
        base = parse_arch(spec.default_arch)
        if partial is None:
            return base, "default"
        return apply_partial_arch(base, partial, arch or ""), "arch"
    check_family(spec, state_dict, path)
    if checkpoint is not None:
        check_file_format(spec.name, checkpoint, path, arch_given=False)
    chans = 3 if spec.input_adapter else 1
    heads = partial.get("num_heads") if partial else None
    inferred = infer_arch(state_dict, in_chans=chans, heads=heads)
    if partial:
        inferred = apply_partial_arch(inferred, partial, arch or "")
    return inferred, "checkpoint"


def _families_text(families: tuple[str, ...]) -> str:
    return " or ".join(family_label(f) for f in families)


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
        f"holds {family_label(found)} (detected from its keys); refusing to build another model "
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
        "name": f"the network named by {info.get('registry_name') or info.get('name')}",
        "default": "the registry default for a weight-less backbone",
    }.get(source, f"source {source!r}")
    if source == "checkpoint" and info.get("arch_given"):
        origin += f", with --arch {info['arch_given']}"
    return f"{info.get('name')}: arch {info.get('arch')} ({origin})"


def lora_targets(name: str, arch: str | None = None) -> tuple[str, ...]:
    """The linear-layer names a LoRA adapter wraps in backbone ``name`` (built with ``arch``).

    The spec's own ``lora_targets`` win; else those of the family of ``arch`` (default: the
    name's default architecture). Empty when neither sets any.
    """
    spec = get_backbone_spec(name)
    if spec.lora_targets:
        return spec.lora_targets
    return family_lora_targets(parse_arch(arch or spec.default_arch).family)


def _read_weights(
    spec: BackboneSpec, path: Path, weights: PathLike | None
) -> tuple[dict, dict, str]:
    digest = sha256_file(path)
    if hub.is_hf_uri(weights):
        hub.check_sha256(path, digest, hub.pinned_sha256(spec.sources, str(weights)), weights)
    checkpoint = safe_load(path)
    return checkpoint, extract_state_dict(checkpoint, spec.prefer, source=path), digest


def build_backbone(
    name: str,
    weights: PathLike | None = None,
    arch: str | None = None,
    img_size: int = 224,
    seed: int = 0,
    weights_dir: PathLike | None = None,
    drop_path_rate: float = 0.0,
    input_calibration: str = "none",
) -> nn.Module:
    """Build a backbone by name, load its weights and describe it in ``backbone_info``.

    Args:
        name: a registered name (:func:`~sarfewshot.models.registry.list_backbones`) or
            a ``prefix:<body>`` name (``timm:<model_name>``).
        weights: checkpoint path or ``hf://`` file; default ``$SARFEWSHOT_WEIGHTS/<expected
            file>``, else the first hub file of a name that reads its weights from the hub
            (``BackboneSpec.hub_default``).
        arch: preset or spec string (:mod:`sarfewshot.models.arch`); None infers the geometry
            from the checkpoint (or uses the name's default when there is none). Only with an
            explicit ``arch`` does a name load a checkpoint of a family or layout it does not
            accept.
        img_size: input side in pixels (sets the grid of absolute position embeddings).
        seed: seed of the random init (used as is by ``random`` and weightless timm models).
        weights_dir: overrides ``$SARFEWSHOT_WEIGHTS``.
        drop_path_rate: stochastic depth of the iRPE ViT (fine-tuning).
        input_calibration: ``none`` (the fixed mapping) or a per-chip calibration that a
            name with its own build path offers (config ``MODEL.BACKBONE.INPUT_CALIBRATION``).

    Returns:
        A module with ``forward_features(x) -> (B, D)``, ``num_features`` and ``backbone_info``
        (``arch_source``: ``checkpoint``, ``arch``, ``name`` or ``default``; see
        :func:`describe_arch`).

    Raises:
        WeightsError: the weights are missing, unsafe, non-finite or do not fit, or the
            checkpoint holds a model family or layout the name does not accept
            (:func:`check_family`, :func:`~sarfewshot.models.family.check_file_format`) and no
            ``arch`` is given.
    """
    spec = get_backbone_spec(name)
    weights = default_weights(spec, weights, weights_dir)
    path = resolve_weights(spec, weights, weights_dir)
    if spec.builder is not None:
        return _build_own_path(spec, path, img_size, seed, input_calibration)
    if input_calibration != "none":
        raise ConfigError(
            f"MODEL.BACKBONE.INPUT_CALIBRATION {input_calibration!r}: backbone {spec.name!r} has "
            "no input calibration (only dB-mapped backbones with a build path of their own do)"
        )
    return _build_from_families(spec, weights, path, arch, img_size, seed, drop_path_rate)


def _build_from_families(
    spec: BackboneSpec,
    weights: PathLike | None,
    path: Path | None,
    arch: str | None,
    img_size: int,
    seed: int,
    drop_path_rate: float,
) -> nn.Module:
    """Read the weights, pick the architecture, construct, load and adapt (steps 2-5 above)."""
    checkpoint = state_dict = digest = None
    if path is not None:
        checkpoint, state_dict, digest = _read_weights(spec, path, weights)
    arch_spec, arch_source = pick_arch(spec, arch, state_dict, path, checkpoint)
    if checkpoint is not None and arch_source != "checkpoint":
        check_file_format(spec.name, checkpoint, path, arch_given=True)
    state_dict, dropped = _unwrap_backbone_keys(state_dict)
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
    info = _backbone_info(spec, model, arch_spec, arch_source, arch, img_size)
    info.update(_weights_info(weights, path, digest, seed))
    info["load"] = _load_counts(report, dropped)
    info["input"] = adapter.describe() if adapter is not None else {"kind": "grey1", "channels": 1}
    info["feature"] = spec.feature or _default_feature(arch_spec)
    model.backbone_info = info
    return model


def _build_own_path(
    spec: BackboneSpec, path: Path | None, img_size: int, seed: int, input_calibration: str
) -> nn.Module:
    """A name with a build path of its own; the calibration is passed only when one is asked
    for, so builders need not take it."""
    if input_calibration != "none":
        return spec.builder(spec, path, img_size, seed, calibration=input_calibration)
    return spec.builder(spec, path, img_size, seed)


def _unwrap_backbone_keys(state_dict: dict | None) -> tuple[dict | None, int]:
    """The backbone's own keys of a wrapper file, and how many other modules' keys it drops."""
    found = detect_family(state_dict) if state_dict is not None else None
    unwrap = get_family(found).unwrap if found is not None else None
    if unwrap is None:
        return state_dict, 0
    inner = unwrap(state_dict)
    return inner, len(state_dict) - len(inner)


def _backbone_info(
    spec: BackboneSpec,
    model: nn.Module,
    arch_spec: ArchSpec,
    arch_source: str,
    arch: str | None,
    img_size: int,
) -> dict[str, Any]:
    """The name and architecture part of ``backbone_info`` (for records)."""
    return {
        "name": spec.name,
        "family": get_family(arch_spec.family).record_family or arch_spec.family,
        "arch": arch_spec.to_string(),
        "arch_source": arch_source,
        "arch_given": arch if arch_source == "checkpoint" and arch else None,
        "img_size": img_size,
        "num_features": int(model.num_features),
    }


def _weights_info(
    weights: PathLike | None, path: Path | None, digest: str | None, seed: int
) -> dict[str, Any]:
    """The weights part of ``backbone_info``: the file as given, where it lies, its digest, and
    the init seed when there is no file."""
    return {
        "weights": str(weights) if hub.is_hf_uri(weights) else (str(path) if path else None),
        "weights_path": str(path) if path is not None else None,
        "weights_sha256": digest,
        "seed": seed if path is None else None,
    }


def _load_counts(report, dropped: int) -> dict | None:
    if report is None:
        return None
    counts = report.counts()
    if dropped:
        counts["dropped_other_modules"] = dropped  # a wrapper file's other modules' keys
    return counts


def _default_feature(arch: ArchSpec) -> str:
    if arch.global_pool == "avg":
        return "mean of the normed patch tokens"
    return "class token after the final norm"
