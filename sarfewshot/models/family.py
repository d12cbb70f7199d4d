"""The hook tables that backbone family modules fill (``sarfewshot.models.zoo``).

The generic machinery (:mod:`~sarfewshot.models.checkpoint`, :mod:`~sarfewshot.models.build`,
:mod:`~sarfewshot.models.factory`) names no family: it looks a family's behaviour up here.

- :data:`FAMILIES`: one :class:`Family` per model family: how to recognise its state dicts,
  infer their geometry, unwrap a wrapper file, construct its network and which linear layers
  LoRA targets. Its ``name`` is the ``ArchSpec.family`` it builds and the family
  :func:`detect_family` reports.
- :data:`FILE_FORMATS`: checkpoint layouts that only some backbone names read
  (:func:`check_file_format`).
- :data:`NAME_PREFIXES`: ``prefix:<body>`` backbone names whose spec is made on demand.

Backbone names and their :class:`~sarfewshot.models.registry.BackboneSpec` (weights file,
sources, input adaptation, feature definition) live in
:data:`~sarfewshot.models.registry.BACKBONE_REGISTRY`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable

import torch
from torch import nn

from sarfewshot.errors import WeightsError
from sarfewshot.utils.registry import Registry

StateDict = Mapping[str, torch.Tensor]
#: ``(arch, img_size, seed, key, drop_path_rate) -> module``; the caller forks the RNG.
Constructor = Callable[[Any, int, int, str, float], nn.Module]


@dataclasses.dataclass(frozen=True)
class Family:
    """What one model family contributes to building and loading a backbone.

    Attributes:
        name: the family key: ``ArchSpec.family`` of what it builds, :func:`detect_family` result.
        label: what a file of this family holds, for messages.
        detect: True when a prefix-stripped state dict belongs to this family (None: never
            detected from a file, e.g. a named-model family).
        order: detection order, lower first (a more specific rule before a general one).
        infer: ``(state_dict, heads) -> ArchSpec fields`` (``global_pool`` included) of a file.
        unwrap: the backbone's own keys of a wrapper file (other modules dropped), or None.
        builds: the ``ArchSpec.family`` its files build when not its own name (a wrapper file).
        construct: a fresh network for an ``ArchSpec`` of this family (None: nothing to build).
        own_readout: the network decides its pooling itself (a spec's ``pooling`` is ignored).
        fc_norm_option: a spec's ``fc_norm`` (fresh LayerNorm after mean pooling) applies.
        record_family: ``backbone_info["family"]`` of a model of this family.
        lora_targets: names of the linear layers a LoRA adapter wraps (``qkv``, ``proj``...).
        blocks: name of the network's list of transformer blocks (the ``partial`` protocol
            trains the last N entries).
        final_norms: names of the norms after the blocks (siblings of ``blocks``) that the
            ``partial`` protocol trains with them; absent names are skipped.
    """

    name: str
    label: str
    detect: Callable[[StateDict], bool] | None = None
    order: int = 50
    infer: Callable[[StateDict, int | None], dict] | None = None
    unwrap: Callable[[StateDict], dict[str, torch.Tensor]] | None = None
    builds: str | None = None
    construct: Constructor | None = None
    own_readout: bool = False
    fc_norm_option: bool = False
    record_family: str | None = None
    lora_targets: tuple[str, ...] = ()
    blocks: str = "blocks"
    final_norms: tuple[str, ...] = ("norm", "fc_norm")


@dataclasses.dataclass(frozen=True)
class FileFormat:
    """A checkpoint layout that only the backbone names in ``readers`` read.

    Attributes:
        name: short name of the layout.
        label: how it is recognised, for messages.
        detect: True when a loaded file (the dict :func:`safe_load` returns) has this layout.
        readers: the backbone names that read it; any other name refuses the file unless
            ``--arch`` says what to build, and these names refuse a file without it.
    """

    name: str
    label: str
    detect: Callable[[Mapping[str, Any]], bool]
    readers: tuple[str, ...]


FAMILIES = Registry("model family")
FILE_FORMATS = Registry("checkpoint format")
#: ``"prefix:"`` -> ``name -> BackboneSpec`` for names made on demand (``timm:<model>``).
NAME_PREFIXES: dict[str, Callable[[str], Any]] = {}
UNKNOWN_LABEL = "an unrecognised architecture (neither an iRPE table nor an absolute pos_embed)"


def register_family(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` (a family module calls this once)."""
    return FAMILIES.register(family.name)(family)


def family(name: str, role: str = "construct", **fields: Any) -> Callable:
    """Decorator: register a :class:`Family` whose ``role`` hook is the decorated function.

    Example (in a family module; see docs/architecture.md, "How to add a family")::

        @family("mynet", label="MyNet (mynet.* keys)", detect=lambda sd: "mynet.w" in sd)
        def construct_mynet(arch, img_size, seed, key, drop_path_rate=0.0): ...
    """

    def deco(fn: Callable) -> Callable:
        register_family(Family(name=name, **{role: fn}, **fields))
        return fn

    return deco


def register_file_format(fmt: FileFormat) -> FileFormat:
    """Add ``fmt`` to :data:`FILE_FORMATS`."""
    return FILE_FORMATS.register(fmt.name)(fmt)


def name_prefix(prefix: str) -> Callable:
    """Decorator: ``prefix:<body>`` backbone names get their spec from the decorated factory."""

    def deco(factory: Callable[[str], Any]) -> Callable[[str], Any]:
        NAME_PREFIXES[prefix.lower()] = factory
        return factory

    return deco


def get_family(name: str) -> Family:
    """The registered :class:`Family` called ``name``."""
    return FAMILIES.get(name)


def _detectors() -> list[Family]:
    found = [FAMILIES.get(n) for n in FAMILIES.list()]
    return sorted((f for f in found if f.detect is not None), key=lambda f: (f.order, f.name))


def detect_family(state_dict: StateDict) -> str | None:
    """The family a (prefix-stripped) state dict belongs to, from its keys alone (None: none).

    Families are tried in their ``order``; the first whose ``detect`` accepts the keys wins.
    """
    return next((f.name for f in _detectors() if f.detect(state_dict)), None)


def family_label(name: str | None) -> str:
    """What a file of family ``name`` holds, for messages."""
    return UNKNOWN_LABEL if name is None else FAMILIES.get(name).label


def lora_targets(arch_family: str) -> tuple[str, ...]:
    """The linear-layer names LoRA targets in a network of ``arch_family`` (() if none set)."""
    return FAMILIES.get(arch_family).lora_targets if arch_family in FAMILIES else ()


def file_format(obj: Mapping[str, Any]) -> FileFormat | None:
    """The registered layout a loaded checkpoint has, or None for an ordinary file."""
    return next((f for n in FILE_FORMATS.list() if (f := FILE_FORMATS.get(n)).detect(obj)), None)


def check_file_format(name: str, obj: Mapping[str, Any], path: object, arch_given: bool) -> None:
    """Refuse a file whose layout belongs to other backbone names, and the reverse.

    Args:
        name: the backbone name asked for.
        obj: the loaded checkpoint.
        path: the file, for the message.
        arch_given: a full ``--arch`` says what to build: a file of another name's layout is
            then built under ``name`` (the reverse is still refused: a reader's name promises
            the layout's own encoder).

    Raises:
        WeightsError: naming the file, the layout found and the backbone name that reads it.
    """
    found = file_format(obj)
    readers = [FILE_FORMATS.get(n) for n in FILE_FORMATS.list()]
    wanted = [f for f in readers if name.lower() in f.readers]
    if found is not None and name.lower() not in found.readers and not arch_given:
        raise WeightsError(
            f"{path}: the file is in {found.name} format ({found.label}), which backbone "
            f"{name!r} does not read; use --backbone {found.readers[0]} (the name that reads "
            f"it), or pass a full --arch to build it under {name!r} anyway"
        )
    if wanted and found not in wanted:
        keys = sorted(map(str, obj))[:8]
        raise WeightsError(
            f"{path}: backbone {name!r} reads only {wanted[0].name}-format files "
            f"({wanted[0].label}); this file has none (top-level keys {keys}); use the backbone "
            "name of the file's model"
        )
