"""Constructing backbones from an :class:`ArchSpec` and filling them from a state dict.

Every backbone exposes ``forward_features(x) -> (B, D)`` and ``num_features``; the network of an
``ArchSpec`` comes from its family's ``construct`` hook (:data:`sarfewshot.models.family.
FAMILIES`). A wrapper whose checkpoint keys are those of an inner module names it as
``load_target``. A model that expects another input than the toolkit's one-channel [0, 1] batch
is wrapped in :class:`AdaptedBackbone`, whose :class:`InputAdapter` does the model-specific
channel replication and normalisation (:data:`INPUT_ADAPTERS`; a family module may add kinds).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import nn

from sarfewshot.errors import ConfigError
from sarfewshot.models.arch import ArchSpec
from sarfewshot.models.checkpoint import (
    RELEASE_EXTRA_KEYS,
    LoadReport,
    adapt_state_dict,
    load_checked,
)
from sarfewshot.models.family import FAMILIES
from sarfewshot.utils.seeding import derive_seed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Input adaptations by name: (channels the model takes, mean/std or None). A spec names one in
#: ``input_adapter``; a family whose model wants other statistics adds its kind here.
INPUT_ADAPTERS: dict[str, tuple[int, tuple | None]] = {
    "grey3": (3, None),
    "grey3_imagenet": (3, (IMAGENET_MEAN, IMAGENET_STD)),
}


class InputAdapter(nn.Module):
    """The toolkit's grey batch ``(B, 1, S, S)`` in [0, 1] -> what a model was trained on.

    The grey channel is copied to every channel (a batch that already has that many channels is
    used as is), then normalised per channel when ``mean``/``std`` are given.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.channels, stats = INPUT_ADAPTERS[kind]
        self.normalise = stats is not None
        if stats is not None:
            shape = (1, self.channels, 1, 1)
            self.register_buffer("mean", torch.tensor(stats[0]).view(shape), persistent=False)
            self.register_buffer("std", torch.tensor(stats[1]).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, self.channels, -1, -1)
        if self.normalise:
            x = (x - self.mean) / self.std
        return x

    def describe(self) -> dict:
        """The adaptation as a record entry."""
        out = {"kind": self.kind, "channels": self.channels, "replicate": True}
        if self.normalise:
            out["mean"] = [round(float(v), 6) for v in self.mean.flatten()]
            out["std"] = [round(float(v), 6) for v in self.std.flatten()]
        return out


class AdaptedBackbone(nn.Module):
    """A backbone behind its :class:`InputAdapter`; same ``forward_features`` contract."""

    def __init__(self, backbone: nn.Module, adapter: InputAdapter) -> None:
        super().__init__()
        self.adapter = adapter
        self.backbone = backbone
        self.num_features = int(backbone.num_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Grey images ``(B, 1, S, S)`` -> features ``(B, D)``."""
        return self.backbone.forward_features(self.adapter(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


@contextlib.contextmanager
def private_rng(seed: int) -> Iterator[None]:
    """Run a block with torch's global CPU generator set to ``seed`` and restored afterwards.

    Module constructors (ours and timm's) draw their default init from the global generator;
    forking it keeps those draws reproducible and leaves the caller's random state untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def construct(
    arch: ArchSpec, img_size: int, seed: int, key: str, drop_path_rate: float = 0.0
) -> nn.Module:
    """A freshly initialised backbone for ``arch``, reproducible from ``(seed, key)``.

    The family's constructor runs under torch's global generator forked and seeded with the
    derived seed, so module inits (ours and timm's) are reproducible and leave the caller's
    random state untouched; a family may draw from its own generator instead.
    """
    family = FAMILIES.get(arch.family) if arch.family in FAMILIES else None
    if family is None or family.construct is None:
        raise ConfigError(f"arch {arch.to_string()!r}: no registered family builds {arch.family!r}")
    with private_rng(derive_seed(seed, "backbone", key)):
        return family.construct(arch, img_size, seed, key, drop_path_rate)


def _pos_embed_grids(target: nn.Module, prefix: int) -> dict[str, int]:
    """The model's absolute position embeddings (``*pos_embed``) and the grid side of each."""
    grids = {}
    for key, value in target.state_dict().items():
        if key.split(".")[-1].endswith("pos_embed") and value.ndim == 3:
            grids[key] = int(round((value.shape[1] - prefix) ** 0.5))
    return grids


def load_into(
    backbone: nn.Module,
    state_dict: dict[str, torch.Tensor],
    path: str,
    allowed_missing: Sequence[str] = (),
    ignore_unexpected: Sequence[str] = RELEASE_EXTRA_KEYS,
    sha256: str | None = None,
) -> LoadReport:
    """Adapt ``state_dict`` to ``backbone`` (channels, position grid) and load it, checked."""
    target = getattr(backbone, "load_target", backbone)
    in_chans = int(target.patch_embed.proj.weight.shape[1]) if hasattr(target, "patch_embed") else 1
    prefix = int(getattr(target, "num_prefix_tokens", 0))
    grids = _pos_embed_grids(target, prefix)
    adapted = adapt_state_dict(state_dict, in_chans, grids, prefix, source=path)
    return load_checked(target, adapted, path, allowed_missing, ignore_unexpected, sha256)
