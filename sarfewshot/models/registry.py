"""Backbone names: the :class:`BackboneSpec` of each, their registry and listing, and where a
name's weights file is found.

Each spec states its default architecture, its checkpoint format rule, the file name looked up
under ``$SARFEWSHOT_WEIGHTS``, the keys allowed to be missing, the model families its checkpoints
may hold (``accepts``), its input adaptation, feature definition and known public sources. The
family modules of :mod:`sarfewshot.models.zoo` register their names here (``@zoo_backbone``, or
:func:`~sarfewshot.models.family.name_prefix` for ``prefix:<body>`` names such as
``timm:<model_name>``); :mod:`sarfewshot.models.factory` builds a name. Weights may be
``hf://OWNER/REPO/PATH[@REVISION]`` (:mod:`sarfewshot.models.hub`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from sarfewshot.errors import ConfigError, WeightsError
from sarfewshot.models import hub
from sarfewshot.models.checkpoint import DEFAULT_PREFER, RELEASE_EXTRA_KEYS, RELEASE_HINT
from sarfewshot.models.family import NAME_PREFIXES
from sarfewshot.models.hub import WeightSource
from sarfewshot.utils.io import PathLike
from sarfewshot.utils.registry import Registry

WEIGHTS_ENV = "SARFEWSHOT_WEIGHTS"


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
    where: str | None = None  # where its files are, when one text covers every source
    # the geometry is the name's (a named model): --arch fields and checkpoint inference are off
    fixed_arch: bool = False
    # (spec, weights path, img_size, seed) -> module with backbone_info: a whole build path of
    # its own (a model from another library's builder) instead of construct + load; one that
    # offers an input calibration also takes calibration=<MODEL.BACKBONE.INPUT_CALIBRATION>
    builder: Callable | None = None
    # linear layers LoRA wraps; empty: the family's (family.lora_targets)
    lora_targets: tuple[str, ...] = ()
    # without --weights and without its file in the weights folder, read the first hf:// file
    # of ``sources`` (from the Hugging Face cache; downloaded unless HF_HUB_OFFLINE=1)
    hub_default: bool = False


BACKBONE_REGISTRY = Registry("backbone")


def zoo_backbone(name: str, aliases: tuple[str, ...] = ()):
    """Decorator: register the :class:`BackboneSpec` a factory returns under ``name``."""

    def deco(factory):
        BACKBONE_REGISTRY.register(name, aliases=aliases)(factory())
        return factory

    return deco


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec of a registered name or alias, or of a ``prefix:<body>`` name (``timm:...``)."""
    prefix, sep, _ = name.partition(":")
    factory = NAME_PREFIXES.get(f"{prefix.lower()}:") if sep else None
    if factory is not None:
        return factory(name)
    return BACKBONE_REGISTRY.get(name)


def list_backbones() -> list[str]:
    """Registered backbone names (any ``timm:<model_name>`` is accepted as well)."""
    return BACKBONE_REGISTRY.list()


def default_weights(
    spec: BackboneSpec, weights: PathLike | None = None, weights_dir: PathLike | None = None
) -> PathLike | None:
    """``weights``, else the hub file of a ``hub_default`` name whose local file is absent.

    A file named ``expected_file`` in the weights folder still wins over the hub, so a copy
    kept next to the other weights is read as before.
    """
    if weights or not spec.hub_default:
        return weights
    folder = resolve_weights_dir(weights_dir)
    if folder is not None and spec.expected_file and (folder / spec.expected_file).is_file():
        return None
    source = next((s for s in spec.sources if s.kind == "hf" and s.file), None)
    return source.uri() if source is not None else None


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
        f"folder holding it ({spec.where or _where(spec)})"
    )


def _where(spec: BackboneSpec) -> str:
    if spec.where:
        return f"{spec.where}; download one and pass --weights PATH or put it in ${WEIGHTS_ENV}"
    if not spec.sources:
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
        "hub_default": default_weights(spec, None, weights_dir) if not found else None,
        "sources": [src.describe() for src in spec.sources],
    }
