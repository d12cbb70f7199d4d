"""Architecture descriptions: presets, spec strings and their round trip.

Three families of strings are accepted wherever an ``arch`` is asked for:

- a preset name (``irpe_vit_base_patch16``, ..., ``vit_base_patch16``; see :func:`list_archs`);
- an iRPE spec ``"irpe:patch=8,dim=64,depth=2,heads=2[,cls=0][,mlp=4][,chans=1][,pool=avg]"``
  or a plain-ViT spec ``"vit:..."`` with the same fields (plain ViTs have an absolute position
  embedding and come from timm);
- ``"timm:<model_name>"``: any timm model, created with ``in_chans=1`` and no head;
- a HiViT spec ``"hivit:patch=16,dim=512,depths=2-2-20,heads=8[,stem_mlp=3][,chans=3]"``
  (SARATR-X): ``depths`` lists the blocks per stage, the last stage being the main one;
- a partial spec ``"heads=3"`` (fields only, no family): with a checkpoint, it fills in what
  the weights cannot say and everything else is still inferred (:func:`parse_partial_arch`).

A plain ViT with ``cls=0`` is read by mean pooling (I-JEPA encoders); with a class token the
class token after the final norm is the feature, as for the iRPE ViT.
"""

from __future__ import annotations

import dataclasses

from sarfewshot.errors import ConfigError
from sarfewshot.models.family import FAMILIES

_FIELDS = {
    "patch": "patch_size",
    "dim": "embed_dim",
    "depth": "depth",
    "heads": "num_heads",
    "mlp": "mlp_ratio",
    "chans": "in_chans",
    "cls": "class_token",
    "qkv_bias": "qkv_bias",
    "pool": "pool",
    "fc_norm": "fc_norm",
    "depths": "depths",
    "stem_mlp": "stem_mlp_ratio",
}


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """Geometry of a backbone.

    ``family`` is ``"irpe"`` (this package's iRPE ViT), ``"vit"`` (timm VisionTransformer built
    from these fields), ``"hivit"`` (:class:`sarfewshot.models.zoo.saratrx.HiViT`; ``depths``
    per stage, ``depth`` = the main stage's), ``"timm"`` (a named timm model, ``timm_name``; the
    other fields unused) or another registered family (:data:`sarfewshot.models.family.FAMILIES`).
    ``fc_norm`` puts a fresh LayerNorm after the mean pooling (MAE fine-tuning
    readout: SARMAE, SARATR-X) instead of the final norm on every token.
    """

    family: str = "irpe"
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    in_chans: int = 1
    class_token: bool = True
    qkv_bias: bool = True
    timm_name: str | None = None
    pool: str | None = None
    fc_norm: bool = False
    depths: tuple[int, ...] = ()
    stem_mlp_ratio: float = 3.0

    @property
    def global_pool(self) -> str:
        """``pool`` when set, else ``"token"`` with a class token and ``"avg"`` without."""
        if self.pool:
            return self.pool
        return "token" if self.class_token else "avg"

    def to_string(self) -> str:
        """Canonical spec string; :func:`parse_arch` reads it back to an equal spec."""
        if self.family == "timm":
            return f"timm:{self.timm_name}"
        if self.family == "hivit":
            return self._hivit_string()
        parts = [
            f"patch={self.patch_size}",
            f"dim={self.embed_dim}",
            f"depth={self.depth}",
            f"heads={self.num_heads}",
        ]
        if self.mlp_ratio != 4.0:
            parts.append(f"mlp={self.mlp_ratio:g}")
        if self.in_chans != 1:
            parts.append(f"chans={self.in_chans}")
        if not self.class_token:
            parts.append("cls=0")
        if not self.qkv_bias:
            parts.append("qkv_bias=0")
        if self.pool and self.pool != ("token" if self.class_token else "avg"):
            parts.append(f"pool={self.pool}")
        if self.fc_norm:
            parts.append("fc_norm=1")
        return f"{self.family}:" + ",".join(parts)

    def _hivit_string(self) -> str:
        parts = [
            f"patch={self.patch_size}",
            f"dim={self.embed_dim}",
            "depths=" + "-".join(str(d) for d in self.depths),
            f"heads={self.num_heads}",
        ]
        if self.mlp_ratio != 4.0:
            parts.append(f"mlp={self.mlp_ratio:g}")
        if self.stem_mlp_ratio != 3.0:
            parts.append(f"stem_mlp={self.stem_mlp_ratio:g}")
        if self.in_chans != 1:
            parts.append(f"chans={self.in_chans}")
        return "hivit:" + ",".join(parts)

    def irpe_kwargs(self) -> dict:
        """Keyword arguments of :class:`sarfewshot.models.vit_irpe.IRPEViT`."""
        return {
            "patch_size": self.patch_size,
            "in_chans": self.in_chans,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "class_token": self.class_token,
            "global_pool": self.global_pool,
        }


def _irpe(patch: int, dim: int, depth: int, heads: int) -> ArchSpec:
    return ArchSpec("irpe", patch, dim, depth, heads)


def _vit(patch: int, dim: int, depth: int, heads: int, cls: bool = True) -> ArchSpec:
    return ArchSpec("vit", patch, dim, depth, heads, class_token=cls)


ARCH_PRESETS: dict[str, ArchSpec] = {
    "irpe_vit_base_patch16": _irpe(16, 768, 12, 12),
    "irpe_vit_small_patch16": _irpe(16, 384, 12, 6),
    "irpe_vit_tiny_patch16": _irpe(16, 192, 12, 3),
    # the CPU test model: two blocks, 8x8 patches, 64 wide
    "irpe_vit_micro_patch8": _irpe(8, 64, 2, 2),
    "vit_base_patch16": _vit(16, 768, 12, 12),
    "vit_small_patch16": _vit(16, 384, 12, 6),
    "vit_tiny_patch16": _vit(16, 192, 12, 3),
    "vit_base_patch16_nocls": _vit(16, 768, 12, 12, cls=False),
    "vit_large_patch16": _vit(16, 1024, 24, 16),
}


def register_preset(name: str, arch: ArchSpec) -> ArchSpec:
    """Add a preset (a family module's named geometry, e.g. its released model's)."""
    key = name.lower()
    if key in ARCH_PRESETS and ARCH_PRESETS[key] != arch:
        raise KeyError(f"arch preset {name!r} already registered with another geometry")
    ARCH_PRESETS[key] = arch
    return arch


def list_archs() -> list[str]:
    """Preset names accepted by ``arch=`` (spec strings are accepted too)."""
    return sorted(ARCH_PRESETS)


def _parse_value(field: str, text: str, spec: str):
    try:
        if field in ("mlp_ratio", "stem_mlp_ratio"):
            return float(text)
        if field == "depths":
            return tuple(int(d) for d in text.split("-"))
        if field == "pool":
            if text not in ("token", "avg"):
                raise ValueError(text)
            return text
        if field in ("class_token", "qkv_bias", "fc_norm"):
            if text not in ("0", "1"):
                raise ValueError(text)
            return text == "1"
        return int(text)
    except ValueError:
        raise ConfigError(f"arch {spec!r}: bad value {text!r} for {field}") from None


def _field_values(body: str, spec: str) -> dict:
    values: dict = {}
    for item in filter(None, (p.strip() for p in body.split(","))):
        key, sep, text = item.partition("=")
        if not sep or key.strip() not in _FIELDS:
            raise ConfigError(
                f"arch {spec!r}: unknown field {item!r}; expected key=value with keys "
                f"{', '.join(_FIELDS)}"
            )
        field = _FIELDS[key.strip()]
        values[field] = _parse_value(field, text.strip(), spec)
    return values


def check_arch(arch: ArchSpec, spec: str) -> ArchSpec:
    """``arch`` if its fields agree with each other, else a ConfigError naming ``spec``."""
    if arch.num_heads < 1 or arch.embed_dim % arch.num_heads:
        raise ConfigError(f"arch {spec!r}: dim {arch.embed_dim} not divisible by heads")
    if arch.global_pool == "token" and not arch.class_token:
        raise ConfigError(f"arch {spec!r}: pool=token needs a class token")
    return arch


def _parse_fields(family: str, body: str, spec: str) -> ArchSpec:
    values = _field_values(body, spec)
    depth_field = "depths" if family == "hivit" else "depth"
    for required in ("patch_size", "embed_dim", depth_field, "num_heads"):
        if required not in values:
            raise ConfigError(f"arch {spec!r}: missing field for {required}")
    if family == "hivit":
        values["depth"] = values["depths"][-1]
        values.setdefault("class_token", False)
    return check_arch(ArchSpec(family=family, **values), spec)


def is_partial_arch(spec: str | ArchSpec | None) -> bool:
    """Whether ``spec`` is a partial arch (``"heads=3"``: fields without a family or preset)."""
    if not isinstance(spec, str):
        return False
    text = spec.strip()
    return bool(text) and ":" not in text and "=" in text and text.lower() not in ARCH_PRESETS


def parse_partial_arch(spec: str) -> dict:
    """The fields of a partial arch ``"heads=3[,mlp=4...]"`` as ArchSpec field values."""
    return _field_values(spec.strip(), spec)


def apply_partial_arch(arch: ArchSpec, fields: dict, spec: str) -> ArchSpec:
    """``arch`` with the fields of a partial arch replacing its own, checked."""
    if "depths" in fields and arch.family == "hivit":
        fields = {**fields, "depth": fields["depths"][-1]}
    return check_arch(dataclasses.replace(arch, **fields), spec)


def parse_arch(spec: str | ArchSpec) -> ArchSpec:
    """Turn a preset name or spec string into an :class:`ArchSpec` (ConfigError if invalid)."""
    if isinstance(spec, ArchSpec):
        return spec
    text = spec.strip()
    if text.lower() in ARCH_PRESETS:
        return ARCH_PRESETS[text.lower()]
    family, sep, body = text.partition(":")
    family = family.strip().lower()
    if sep and family == "timm":
        if not body.strip():
            raise ConfigError(f"arch {spec!r}: give a timm model name after 'timm:'")
        return ArchSpec(family="timm", timm_name=body.strip())
    if sep and (family in ("irpe", "vit", "hivit") or family in FAMILIES):
        return _parse_fields(family, body, text)
    raise ConfigError(
        f"unknown arch {spec!r}; use a preset ({', '.join(list_archs())}), "
        "'irpe:patch=..,dim=..,depth=..,heads=..[,cls=0]', 'vit:...', 'hivit:...', "
        "'timm:<model_name>', or with a checkpoint a partial 'heads=H'"
    )
