"""``torchgeo:<Enum>.<MEMBER>`` backbones: torchgeo's SAR-band pretrained weights.

Example: ``torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO`` (SSL4EO-S12 Sentinel-1 MoCo, bands VV
and VH). Needs the optional extra ``torchgeo``. Every member of torchgeo's weight enums whose
``meta["bands"]`` are all SAR polarisations (VV, VH, HH, HV) is either supported or refused in
one line (:func:`sar_members`, :func:`member_status`; ``sarfewshot backbones --torchgeo``).

The input mapping of a member is read from its own ``transforms``:

- geometric steps (``Resize``, ``CenterCrop``) are replaced by the dataset's crop and the one
  resize to ``--img-size`` that every backbone gets (recorded under ``torchgeo_geometry``);
- a ``Normalize`` with negative means is a z-score on Sentinel-1 backscatter in dB (SSL4EO-S12
  statistics): the chip is mapped to ``dB = 20 log10(max(x, 1e-3))`` (amplitude -> power in dB,
  floor -60 dB), that one dB image is fed to every polarisation channel, then normalised with
  torchgeo's mean and std of each channel (kind ``amplitude_db``);
- a ``Normalize`` with mean 0 and std 255 (SatlasPretrain) takes 8-bit images to [0, 1]: the
  chip's 8-bit value ``255 x`` is fed to every channel, so the network sees the chip's [0, 1]
  amplitude itself (kind ``amplitude_8bit``);
- no value step at all (``Identity``, or a resize alone: the CLOSP weights) means the weights
  take their training data's raw values, whose unit torchgeo does not state: refused, as is any
  other normalisation.

``calibration="median"`` (config ``MODEL.BACKBONE.INPUT_CALIBRATION``; dB members only) shifts
each chip's dB image so that its median lands on each channel's mean before the z-score, i.e.
``z = (dB - median(dB)) / std``. The default ``none`` keeps the fixed mapping above.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch
from torch import nn

from sarfewshot.errors import ConfigError, WeightsError
from sarfewshot.models.build import load_into, private_rng
from sarfewshot.models.checkpoint import extract_state_dict, safe_load
from sarfewshot.models.family import name_prefix
from sarfewshot.models.registry import BackboneSpec
from sarfewshot.utils.io import sha256_file

TORCHGEO_PREFIX = "torchgeo:"
SAR_BANDS = {"VV", "VH", "HH", "HV"}
DB_FLOOR = -60.0  # dB of the amplitude floor 1e-3
CALIBRATIONS = ("none", "median")
GEOMETRY_STEPS = ("Resize", "CenterCrop")  # replaced by the dataset's crop and --img-size
HEAD_KEYS = ("fc.*", "head.*")  # classifier heads: absent from the built backbone


@dataclasses.dataclass(frozen=True)
class InputMapping:
    """How a one-channel chip in [0, 1] becomes the member's input (module docstring)."""

    kind: str  # "amplitude_db" | "amplitude_8bit"
    mean: tuple[float, ...]
    std: tuple[float, ...]
    geometry: tuple[str, ...] = ()  # torchgeo's geometric steps, replaced by the dataset's

    def describe(self, bands: list[str], calibration: str) -> dict:
        """The record's ``input`` field."""
        out = {"kind": self.kind, "channels": len(bands), "bands": bands}
        if self.kind == "amplitude_db":
            out["db"] = f"20*log10(max(x, {10 ** (DB_FLOOR / 20):g}))"
        else:
            out["scale"] = "255*x (the chip's 8-bit value)"
        out |= {"mean": list(self.mean), "std": list(self.std), "calibration": calibration}
        out["torchgeo_geometry"] = list(self.geometry)
        return out


def _tgm():
    try:
        import torchgeo.models as tgm
    except ImportError:
        raise ConfigError(
            "torchgeo backbones need torchgeo: pip install 'sarfewshot[torchgeo]'"
        ) from None
    return tgm


def _weight_enums() -> dict[str, type]:
    """torchgeo's weight enums by name (every ``WeightsEnum`` subclass ``torchgeo.models`` has)."""
    from torchvision.models._api import WeightsEnum

    tgm = _tgm()
    return {
        name: obj
        for name in dir(tgm)
        if isinstance(obj := getattr(tgm, name), type)
        and issubclass(obj, WeightsEnum)
        and obj is not WeightsEnum
    }


def _is_sar(weights) -> bool:
    bands = set(weights.meta.get("bands") or ())
    return bool(bands) and bands <= SAR_BANDS


def sar_members() -> list[str]:
    """Every ``torchgeo:<Enum>.<MEMBER>`` whose bands are all SAR polarisations, sorted."""
    return sorted(
        f"{TORCHGEO_PREFIX}{enum_name}.{member.name}"
        for enum_name, enum in _weight_enums().items()
        for member in enum
        if _is_sar(member)
    )


def torchgeo_weights(name: str):
    """The torchgeo ``WeightsEnum`` member named by ``torchgeo:<Enum>.<MEMBER>``."""
    body = name[len(TORCHGEO_PREFIX) :].strip()
    enum_name, _, member = body.partition(".")
    enum = getattr(_tgm(), enum_name, None)
    if enum is None or not member or member not in getattr(enum, "__members__", {}):
        raise ConfigError(
            f"backbone {name!r}: give torchgeo:<WeightsEnum>.<MEMBER>, e.g. "
            "torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO (sarfewshot backbones --torchgeo)"
        )
    weights = enum[member]
    if not _is_sar(weights):
        bands = sorted(set(weights.meta.get("bands") or ()))
        raise ConfigError(
            f"backbone {name!r}: bands {bands or 'unknown'} are not SAR polarisations "
            f"({sorted(SAR_BANDS)}); only SAR-capable weights map from a one-channel chip"
        )
    return weights


def _steps(transforms) -> list[nn.Module]:
    if isinstance(transforms, nn.Sequential):
        return list(transforms)
    return [transforms] if isinstance(transforms, nn.Module) else []


def input_mapping(name: str, weights) -> InputMapping:
    """The member's mapping, read from its own transforms; ConfigError says why there is none."""
    geometry, stats = [], []
    for step in _steps(getattr(weights, "transforms", None)):
        kind = type(step).__name__
        if kind in GEOMETRY_STEPS:
            geometry.append(repr(step).replace("\n", " "))
        elif hasattr(step, "mean") and hasattr(step, "std"):
            stats.append(([float(v) for v in step.mean], [float(v) for v in step.std]))
        elif kind != "Identity":
            raise ConfigError(f"{name}: torchgeo transform step {kind} has no mapping here")
    if not stats:
        steps = "a resize only" if geometry else "Identity"
        raise ConfigError(
            f"{name}: its torchgeo transforms ({steps}) have no value normalisation: the weights "
            "take their training data's raw values, whose unit torchgeo does not state, so no "
            "mapping from an amplitude chip can be justified"
        )
    (mean, std), channels = stats[-1], int(weights.meta["in_chans"])
    mean, std = _per_channel(mean, channels), _per_channel(std, channels)
    if len(stats) == 1 and all(m < 0 for m in mean):
        return InputMapping("amplitude_db", mean, std, tuple(geometry))
    if len(stats) == 1 and all(m == 0 for m in mean) and all(s == 255 for s in std):
        return InputMapping("amplitude_8bit", mean, std, tuple(geometry))
    raise ConfigError(
        f"{name}: normalisation mean {mean} std {std} is neither a z-score on dB backscatter "
        "(negative means) nor an 8-bit scaling (mean 0, std 255)"
    )


def _per_channel(values: list[float], channels: int) -> tuple[float, ...]:
    return tuple(values * channels if len(values) == 1 else values)


class TorchGeoBackbone(nn.Module):
    """A torchgeo model behind its member's input mapping (module docstring)."""

    def __init__(
        self, model: nn.Module, mapping: InputMapping, num_features: int, calibration: str
    ) -> None:
        super().__init__()
        self.model = model
        self.kind = mapping.kind
        self.calibration = calibration
        self.channels = len(mapping.mean)
        self.register_buffer("mean", torch.tensor(mapping.mean).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(mapping.std).view(1, -1, 1, 1), False)
        self.num_features = int(num_features)

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """Grey amplitude ``(B, 1, S, S)`` in [0, 1] -> the member's normalised input."""
        grey = x[:, :1]
        if self.kind == "amplitude_8bit":
            value = (grey * 255.0).expand(-1, self.channels, -1, -1)
            return (value - self.mean) / self.std
        db = 20.0 * torch.log10(grey.clamp_min(10 ** (DB_FLOOR / 20)))
        value = db.expand(-1, self.channels, -1, -1)
        if self.calibration == "median":  # each chip's median dB onto each channel's mean
            median = db.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
            value = value - median + self.mean
        return (value - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> pooled features ``(B, D)``."""
        return self.model(self.adapt(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def _build_net(name: str, weights, img_size: int) -> tuple[nn.Module, int, str]:
    """torchgeo's network of the member without its head: (model, features, feature text)."""
    tgm, model_name = _tgm(), str(weights.meta["model"])
    channels = int(weights.meta["in_chans"])
    if model_name.startswith("swin"):
        # torchvision's Swin takes no in_chans: torchgeo swaps the first conv for the
        # member's channels (same kernel and stride) before loading, as done here.
        model = tgm.get_model(model_name)
        stem = model.features[0][0]
        model.features[0][0] = nn.Conv2d(channels, stem.out_channels, stem.kernel_size, stem.stride)
        width, model.head = model.head.in_features, nn.Identity()
        return model, width, f"pooled output of torchvision {model_name} after its final norm"
    if model_name.startswith("vit"):
        patch = int(re.search(r"patch(\d+)", model_name).group(1))  # timm names carry it
        if img_size % patch:
            raise ConfigError(
                f"{name}: --img-size {img_size} is not a multiple of its patch size {patch} "
                f"(the last {img_size % patch} pixels would be dropped); use "
                f"{img_size - img_size % patch} or {img_size - img_size % patch + patch}"
            )
        model = tgm.get_model(model_name, in_chans=channels, num_classes=0, img_size=img_size)
        return model, model.num_features, f"timm {model_name} pre-logits (class token, no head)"
    if model_name.startswith("resnet"):
        model = tgm.get_model(model_name, in_chans=channels, num_classes=0)
        return model, model.num_features, f"pooled output of timm {model_name} (no head)"
    raise ConfigError(f"{name}: no build path for torchgeo model {model_name!r}")


def _hub_cache_file(weights) -> Path:
    """Where torch's hub cache keeps the download of ``weights`` (it may not be there)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _state_dict(weights, weights_file: Path | None) -> tuple[dict, str, str]:
    """(state dict, source, sha256): the local file, else torchgeo's download and cache."""
    if weights_file is not None:
        state = extract_state_dict(safe_load(weights_file), source=weights_file)
        return state, str(weights_file), sha256_file(weights_file)
    try:
        state = weights.get_state_dict(progress=True)
    except OSError as exc:  # URLError, no network, a full disk: one line, the way out named
        raise WeightsError(
            f"{weights.url}: torchgeo could not download these weights ({exc}); pass "
            "--weights PATH (a state dict of this member) or put the file in torch's hub cache"
        ) from None
    cached = _hub_cache_file(weights)
    return state, weights.url, sha256_file(cached) if cached.is_file() else ""


def build_torchgeo(
    name: str, weights_file: Path | None, seed: int, img_size: int = 224, calibration: str = "none"
) -> tuple[nn.Module, dict]:
    """The backbone and its ``backbone_info`` fields; loads ``weights_file`` or torchgeo's.

    Raises:
        ConfigError: the member is not SAR, has no mapping, does not fit ``img_size`` or does
            not take ``calibration`` (all before any weights are read).
        WeightsError: the weights do not fit (shapes, missing keys, non-finite values).
    """
    weights = torchgeo_weights(name)
    mapping = input_mapping(name, weights)
    if calibration not in CALIBRATIONS:
        raise ConfigError(
            f"MODEL.BACKBONE.INPUT_CALIBRATION must be one of {CALIBRATIONS}, got {calibration!r}"
        )
    if calibration != "none" and mapping.kind != "amplitude_db":
        raise ConfigError(
            f"{name}: MODEL.BACKBONE.INPUT_CALIBRATION {calibration} applies to dB-normalised "
            f"members only; this one's input is {mapping.kind}"
        )
    with private_rng(seed):
        model, width, feature = _build_net(name, weights, img_size)
    state, source, digest = _state_dict(weights, weights_file)
    report = load_into(model, state, source, HEAD_KEYS, HEAD_KEYS, digest or "-")
    net = TorchGeoBackbone(model, mapping, width, calibration)
    bands = list(weights.meta.get("bands") or ())
    info = {
        "input": mapping.describe(bands, calibration),
        "feature": feature,
        "load": report.counts(),
        "weights_sha256": digest or None,
    }
    return net, info


def build_torchgeo_backbone(
    spec: BackboneSpec, path: Path | None, img_size: int, seed: int, calibration: str = "none"
) -> nn.Module:
    """The backbone of ``spec`` with its ``backbone_info`` (the spec's whole build path)."""
    model, extra = build_torchgeo(spec.name, path, seed, img_size, calibration)
    model.backbone_info = {
        "name": spec.name,
        "family": "torchgeo",
        "arch": spec.default_arch,
        "arch_source": "name",
        "img_size": img_size,
        "num_features": int(model.num_features),
        "weights": str(path) if path is not None else spec.name,
        "seed": None,
        **extra,
    }
    return model


def member_status(name: str) -> dict:
    """A listing row: the member, its model and bands, ``supported`` (with its mapping's kind)
    or ``refused: <why>``; nothing is built or downloaded."""
    weights = torchgeo_weights(name)
    row = {
        "name": name,
        "model": str(weights.meta.get("model")),
        "bands": ",".join(weights.meta.get("bands") or ()),
    }
    try:
        row["input"] = input_mapping(name, weights).kind
        row["status"] = "supported"
    except ConfigError as exc:
        row["input"] = "-"
        row["status"] = f"refused: {str(exc).removeprefix(f'{name}: ')}"
    row["cached"] = "yes" if _hub_cache_file(weights).is_file() else "no"
    return row


@name_prefix(TORCHGEO_PREFIX)
def torchgeo_spec(name: str) -> BackboneSpec:
    """The spec of ``torchgeo:<Enum>.<MEMBER>``: torchgeo's weights unless ``--weights``."""
    body = name[len(TORCHGEO_PREFIX) :].strip()
    return BackboneSpec(
        name=f"{TORCHGEO_PREFIX}{body}",
        description=f"torchgeo weights {body} (SAR bands; chip mapped per its transforms)",
        family="torchgeo",
        default_arch=f"{TORCHGEO_PREFIX}{body}",
        checkpoint_format="torchgeo's state dict of those weights (--weights PATH, else torchgeo)",
        expected_file=None,
        needs_weights=False,
        accepts=(),
        builder=build_torchgeo_backbone,
    )
