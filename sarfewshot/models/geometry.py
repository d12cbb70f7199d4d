"""The geometry a checkpoint was trained with, from its tensor shapes.

:func:`infer_arch` asks the file's family (:func:`~sarfewshot.models.family.detect_family`) for
its geometry; the helpers here are what the families' ``infer`` hooks share: the block count,
the patch embedding, the MLP ratio and the head count of the standard widths. The rules follow
``../shared/spec/SARJEPA.md`` section 2.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from sarfewshot.errors import WeightsError
from sarfewshot.models.arch import ArchSpec
from sarfewshot.models.checkpoint import PATCH_KEY
from sarfewshot.models.family import detect_family, family_label, get_family

# head counts of the standard ViT widths (plain-ViT weights do not reveal the head count)
STANDARD_HEADS = {192: 3, 384: 6, 512: 8, 768: 12, 1024: 16, 1280: 16, 1408: 16}


def block_indices(state_dict: Mapping[str, torch.Tensor]) -> list[int]:
    """The ``N`` of the ``blocks.N.*`` keys, sorted."""
    found = {int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}
    return sorted(found)


def need(state_dict: Mapping[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    """``state_dict[key]``, or a WeightsError saying the ``what`` cannot be inferred."""
    if key not in state_dict:
        raise WeightsError(f"cannot infer the {what}: the checkpoint has no {key!r}")
    return state_dict[key]


def common_geometry(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Patch size, channels, width, depth, MLP ratio, qkv bias and class token of a ViT file."""
    patch = need(state_dict, PATCH_KEY, "patch embedding")
    if patch.ndim != 4 or patch.shape[-1] != patch.shape[-2]:
        raise WeightsError(f"{PATCH_KEY} has shape {tuple(patch.shape)}, expected (D, C, p, p)")
    depth = len(block_indices(state_dict))
    if depth == 0 or block_indices(state_dict) != list(range(depth)):
        raise WeightsError("cannot infer the depth: blocks.N.* keys are missing or not 0..N-1")
    dim = int(patch.shape[0])
    fc1 = need(state_dict, "blocks.0.mlp.fc1.weight", "MLP ratio")
    return {
        "patch_size": int(patch.shape[-1]),
        "in_chans": int(patch.shape[1]),
        "embed_dim": dim,
        "depth": depth,
        "mlp_ratio": float(fc1.shape[0]) / dim,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state_dict,
        "class_token": "cls_token" in state_dict,
    }


def standard_heads(dim: int, what: str, full_spec: str, heads: int | None = None) -> int:
    """``heads`` if given, else the head count of a standard width (ViT-Ti/S/B/L/H, 512).

    Raises:
        WeightsError: for another width, asking for the partial ``--arch heads=H``.
    """
    if heads is not None:
        return heads
    if dim not in STANDARD_HEADS:
        raise WeightsError(
            f"{what}'s weights do not say its head count, and width {dim} is not a standard "
            f'one ({sorted(STANDARD_HEADS)}); pass --arch heads=H (Python: arch="heads=H"; '
            f"the rest is still inferred) or a full --arch {full_spec}"
        )
    return STANDARD_HEADS[dim]


def infer_arch(
    state_dict: Mapping[str, torch.Tensor], in_chans: int = 1, heads: int | None = None
) -> ArchSpec:
    """The :class:`ArchSpec` a state dict was trained with.

    The family comes from :func:`~sarfewshot.models.family.detect_family` (a wrapper file is
    unwrapped first), the geometry from that family's ``infer`` hook; ``heads`` supplies the
    head count that some weights do not store. A 3-channel patch embedding becomes ``in_chans``
    (1) since :func:`adapt_state_dict` sums it; pass ``in_chans=3`` to keep it (the
    model-specific input adaptation then replicates the chip).
    """
    name = detect_family(state_dict)
    if name is None:
        raise WeightsError(
            f"cannot tell the architecture: the checkpoint holds {family_label(None)}; pass --arch"
        )
    family = get_family(name)
    if family.unwrap is not None:
        state_dict = family.unwrap(state_dict)
    if family.infer is None:
        raise WeightsError(f"cannot infer the geometry of {family.label}; pass --arch")
    geo = family.infer(state_dict, heads)
    geo.pop("global_pool")
    if geo.get("in_chans") == 3 and in_chans == 1:
        geo["in_chans"] = 1
    return ArchSpec(family=family.builds or family.name, **geo)
