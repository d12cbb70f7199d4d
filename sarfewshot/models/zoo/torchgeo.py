"""``torchgeo:<Enum>.<MEMBER>`` backbones: torchgeo's SAR-capable pretrained weights.

Example: ``torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO`` (SSL4EO-S12 Sentinel-1 MoCo, bands VV
and VH). The model comes from torchgeo's own builder (``meta["model"]``, ``meta["in_chans"]``,
no head); its output is the pooled feature. Needs the optional extra ``torchgeo``.

Channel mapping. Those weights were trained on Sentinel-1 GRD backscatter in decibels, one
channel per polarisation. A toolkit chip is one amplitude channel scaled to [0, 1] with no
absolute calibration, so it is mapped as: ``dB = 20 log10(max(x, 1e-3))`` (amplitude -> power in
dB, floor -60 dB), the same dB image fed to every polarisation channel (VV and VH both from the
chip), then torchgeo's own per-channel normalisation of those weights (its ``Normalize``
transform, e.g. mean -12.59 / -20.26, std 5.26 / 5.91 for SSL4EO-S12 S1). Only weights whose
bands are all SAR polarisations are accepted.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sarfewshot.errors import ConfigError, WeightsError
from sarfewshot.models.checkpoint import check_finite, extract_state_dict, safe_load
from sarfewshot.models.family import name_prefix
from sarfewshot.models.registry import BackboneSpec
from sarfewshot.utils.io import sha256_file

TORCHGEO_PREFIX = "torchgeo:"
SAR_BANDS = {"VV", "VH", "HH", "HV"}
DB_FLOOR = -60.0  # dB of the amplitude floor 1e-3


def torchgeo_weights(name: str):
    """The torchgeo ``WeightsEnum`` member named by ``torchgeo:<Enum>.<MEMBER>``."""
    body = name[len(TORCHGEO_PREFIX) :].strip()
    try:
        import torchgeo.models as tgm
    except ImportError:
        raise ConfigError(
            f"backbone {name!r} needs torchgeo: pip install 'sarfewshot[torchgeo]'"
        ) from None
    enum_name, _, member = body.partition(".")
    enum = getattr(tgm, enum_name, None)
    if enum is None or not member or member not in enum.__members__:
        raise ConfigError(
            f"backbone {name!r}: give torchgeo:<WeightsEnum>.<MEMBER>, e.g. "
            "torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO (see torchgeo.models.list_models)"
        )
    weights = enum[member]
    bands = set(weights.meta.get("bands") or ())
    if not bands or not bands <= SAR_BANDS:
        raise ConfigError(
            f"backbone {name!r}: bands {sorted(bands) or 'unknown'} are not SAR polarisations "
            f"({sorted(SAR_BANDS)}); only SAR-capable weights map from a one-channel chip"
        )
    return weights


def _normalisation(weights) -> tuple[list[float], list[float]] | None:
    for step in getattr(weights, "transforms", None) or ():
        if hasattr(step, "mean") and hasattr(step, "std"):
            return [float(v) for v in step.mean], [float(v) for v in step.std]
    return None


class TorchGeoBackbone(nn.Module):
    """A torchgeo model behind the dB channel mapping described in the module docstring."""

    def __init__(self, model: nn.Module, channels: int, stats) -> None:
        super().__init__()
        self.model = model
        self.channels = channels
        mean, std = stats if stats is not None else ([0.0] * channels, [1.0] * channels)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.num_features = int(model.num_features)

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """Grey amplitude ``(B, 1, S, S)`` in [0, 1] -> normalised dB ``(B, C, S, S)``."""
        db = 20.0 * torch.log10(x[:, :1].clamp_min(10 ** (DB_FLOOR / 20)))
        return (db.expand(-1, self.channels, -1, -1) - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> pooled features ``(B, D)``."""
        return self.model(self.adapt(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def build_torchgeo(name: str, weights_file: Path | None, seed: int) -> tuple[nn.Module, dict]:
    """The backbone and its ``backbone_info`` fields; loads ``weights_file`` or torchgeo's."""
    import torchgeo.models as tgm

    weights = torchgeo_weights(name)
    channels = int(weights.meta["in_chans"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tgm.get_model(weights.meta["model"], in_chans=channels, num_classes=0)
    if weights_file is not None:
        state = extract_state_dict(safe_load(weights_file), source=weights_file)
    else:
        state = weights.get_state_dict(progress=True)  # torchgeo's download and cache
    check_finite(state, weights_file or weights.url)
    result = model.load_state_dict(state, strict=False)
    stray = [k for k in result.missing_keys if not k.startswith(("fc.", "head."))]
    if stray:
        raise WeightsError(f"{weights_file or weights.url} lacks {len(stray)} key(s): {stray[:5]}")
    stats = _normalisation(weights)
    net = TorchGeoBackbone(model, channels, stats)
    info = {
        "input": {
            "kind": "amplitude_db",
            "channels": channels,
            "bands": list(weights.meta.get("bands") or ()),
            "db": f"20*log10(max(x, {10 ** (DB_FLOOR / 20):g}))",
            "mean": stats[0] if stats else None,
            "std": stats[1] if stats else None,
        },
        "feature": f"pooled output of torchgeo {weights.meta['model']} (no head)",
        "load": {"loaded": len(state) - len(result.unexpected_keys), "missing": len(stray)},
    }
    return net, info


def build_torchgeo_backbone(
    spec: BackboneSpec, path: Path | None, img_size: int, seed: int
) -> nn.Module:
    """The backbone of ``spec`` with its ``backbone_info`` (the spec's whole build path)."""
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


@name_prefix(TORCHGEO_PREFIX)
def torchgeo_spec(name: str) -> BackboneSpec:
    """The spec of ``torchgeo:<Enum>.<MEMBER>``: torchgeo's weights unless ``--weights``."""
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
        builder=build_torchgeo_backbone,
    )
