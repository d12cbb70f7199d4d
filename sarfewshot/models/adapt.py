"""Adapting a built backbone: LoRA adapters (through ``peft``) or training only its last blocks.

Which layers is the family's word (:mod:`sarfewshot.models.family`): ``lora_targets`` (a
``BackboneSpec.lora_targets`` overrides it), ``blocks`` and ``final_norms``. The family is read
from the backbone's ``backbone_info`` (``name`` and ``arch``, set by
:func:`~sarfewshot.models.factory.build_backbone`).

LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) adds
``scale * B A x`` beside each wrapped linear layer, ``A`` of shape ``(r, in)``, ``B`` of shape
``(out, r)`` and ``scale = alpha / r``. ``B`` starts at zero, so fresh adapters change no feature;
``peft``'s ``inject_adapter_in_model`` wraps the layers in place, so the backbone keeps its
``forward_features`` contract.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Sequence

import torch
from torch import nn

from sarfewshot.errors import ConfigError, SarFewShotError
from sarfewshot.models.arch import parse_arch
from sarfewshot.models.build import private_rng
from sarfewshot.models.family import FAMILIES, Family

PEFT_HINT = "LoRA adapters need the peft package: pip install 'sarfewshot[adapters]'"
#: What peft names the adapter weights it adds (``<layer>.lora_A.default.weight``, ...).
LORA_MARK = "lora_"
#: The names a network without a family says nothing about is searched for.
DEFAULT_FAMILY = Family(name="", label="")


def require_peft() -> ModuleType:
    """Import ``peft``, or raise a one-line error naming the extra that installs it."""
    try:
        import peft
    except ImportError:
        raise ConfigError(PEFT_HINT) from None
    return peft


def backbone_family(backbone: nn.Module) -> Family:
    """The family hooks of a built backbone (defaults when its arch names no known family)."""
    arch = (getattr(backbone, "backbone_info", None) or {}).get("arch")
    try:
        name = parse_arch(arch).family if arch else ""
    except SarFewShotError:  # a builder of its own (torchgeo) records no toolkit arch string
        name = ""
    return FAMILIES.get(name) if name in FAMILIES else DEFAULT_FAMILY


def _label(backbone: nn.Module) -> str:
    info = getattr(backbone, "backbone_info", None) or {}
    return f"{info.get('name', type(backbone).__name__)} ({info.get('arch', 'unknown arch')})"


def default_lora_targets(backbone: nn.Module) -> tuple[str, ...]:
    """The linear-layer names LoRA wraps in ``backbone``: its spec's, else its family's."""
    from sarfewshot.models.factory import lora_targets

    info = getattr(backbone, "backbone_info", None) or {}
    try:
        return lora_targets(str(info.get("name")), info.get("arch"))
    except SarFewShotError:  # an unregistered name or an arch of a builder of its own
        return backbone_family(backbone).lora_targets


def lora_layer_names(backbone: nn.Module, targets: Sequence[str], key: str) -> list[str]:
    """Qualified names of the ``nn.Linear`` layers of ``backbone`` that a target names.

    A target is a name suffix on module boundaries, as peft reads ``target_modules``: ``qkv``
    matches every ``...qkv`` layer, ``attn.proj`` only projections inside an ``attn`` module
    (so a pooling head's ``proj`` stays frozen). Only linear layers count, so a patch
    embedding's ``proj`` convolution is never wrapped.

    Raises:
        ConfigError: no target given, or no linear layer of those names (names ``key``).
    """
    if not targets:
        raise ConfigError(
            f"{key} is empty and backbone {_label(backbone)} names no LoRA target layers; set "
            f"{key} (e.g. \"('qkv', 'proj')\")"
        )
    names = [
        name
        for name, module in backbone.named_modules()
        if isinstance(module, nn.Linear)
        and any(name == t or name.endswith("." + t) for t in targets)
    ]
    if not names:
        raise ConfigError(
            f"{key} {list(targets)}: backbone {_label(backbone)} has no linear layer of those names"
        )
    return names


def add_lora(
    backbone: nn.Module,
    rank: int,
    alpha: float,
    dropout: float,
    targets: Sequence[str],
    seed: int,
    key: str = "TRAINER.LORA.TARGETS",
) -> list[str]:
    """Wrap the target layers of ``backbone`` in LoRA adapters (in place); freeze the rest.

    Args:
        backbone: a built backbone (its ``forward_features`` contract is kept).
        rank, alpha, dropout: the adapters' ``r``, ``lora_alpha`` and ``lora_dropout``.
        targets: own names of the linear layers to wrap (``qkv``, ``proj``...).
        seed: seed of the adapters' random init (``A``; ``B`` starts at zero).
        key: the config key of ``targets``, for messages.

    Returns:
        The qualified names of the wrapped layers.
    """
    peft = require_peft()
    names = lora_layer_names(backbone, targets, key)
    config = peft.LoraConfig(
        r=int(rank),
        lora_alpha=float(alpha),
        lora_dropout=float(dropout),
        target_modules=names,
        bias="none",
    )
    with private_rng(seed):  # peft draws A's init from torch's global generator
        peft.inject_adapter_in_model(config, backbone)
    for name, param in backbone.named_parameters():
        param.requires_grad_(is_lora_parameter(name))
    return names


def is_lora_parameter(name: str) -> bool:
    """Whether a parameter name belongs to an adapter peft added."""
    return any(part.startswith(LORA_MARK) for part in name.split("."))


def base_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's own weights under their names before :func:`add_lora` (adapters dropped)."""
    return {
        name.replace(".base_layer.", "."): value
        for name, value in backbone.state_dict().items()
        if not is_lora_parameter(name)
    }


def _block_list(backbone: nn.Module, family: Family) -> tuple[str, nn.Module]:
    found = [
        (name, module)
        for name, module in backbone.named_modules()
        if isinstance(module, (nn.ModuleList, nn.Sequential))
        and name.rsplit(".", 1)[-1] == family.blocks
    ]
    if len(found) != 1:
        raise ConfigError(
            f"backbone {_label(backbone)}: expected one block list named {family.blocks!r}, "
            f"found {len(found)}; the partial protocol cannot tell which blocks are last"
        )
    return found[0]


def last_blocks(backbone: nn.Module, count: int, key: str) -> dict[str, nn.Module]:
    """The last ``count`` blocks of ``backbone`` and its final norms, by qualified name.

    Blocks are the entries of the family's block list (``blocks``), counted from its end; the
    final norms are the family's ``final_norms`` beside that list that hold weights.

    Raises:
        ConfigError: ``count`` is negative or exceeds the number of blocks (names ``key``).
    """
    family = backbone_family(backbone)
    name, blocks = _block_list(backbone, family)
    if not 0 <= count <= len(blocks):
        raise ConfigError(
            f"{key} {count}: backbone {_label(backbone)} has {len(blocks)} blocks; give 0 to "
            f"{len(blocks)}"
        )
    prefix, _, _ = name.rpartition(".")
    parent = backbone.get_submodule(prefix) if prefix else backbone
    picked = {f"{name}.{i}": blocks[i] for i in range(len(blocks) - count, len(blocks))}
    for norm in family.final_norms:
        module = getattr(parent, norm, None)
        if isinstance(module, nn.Module) and any(True for _ in module.parameters()):
            picked[f"{prefix}.{norm}" if prefix else norm] = module
    return picked


def train_last_blocks(backbone: nn.Module, count: int, key: str) -> list[str]:
    """Freeze ``backbone`` except its last ``count`` blocks and final norms; their names."""
    picked = last_blocks(backbone, count, key)
    backbone.requires_grad_(False)
    for module in picked.values():
        module.requires_grad_(True)
    return list(picked)


def parameter_counts(model: nn.Module) -> dict[str, Any]:
    """``trainable_params`` and ``total_params`` of ``model`` (shared tensors counted once)."""
    params = list(model.parameters())
    return {
        "trainable_params": int(sum(p.numel() for p in params if p.requires_grad)),
        "total_params": int(sum(p.numel() for p in params)),
    }
