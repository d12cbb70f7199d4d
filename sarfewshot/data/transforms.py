"""Evaluation preprocessing of SAR chips: centre crop (zero padding), resize, amplitude scaling.

The default :class:`PreprocessSpec` is the SAR-JEPA release's evaluation preset: centre-crop to
128x128 (chips smaller than the crop are zero-padded, never upscaled first), bicubic resize to
224x224, values in [0, 1], no normalisation. For 8-bit chips it is reproduced exactly: the crop
and resize run on an 8-bit ('L') image, as the release does, and the result is divided by 255.

Other inputs are scaled to [0, 1] in float32 first, then cropped (zero padding) and resized as a
float ('F') image, then clipped to [0, 1] (bicubic overshoot):

- ``linear``: amplitude / nominal maximum (65535 for 16-bit). Float data (float TIFF, raw MSTAR)
  has no nominal maximum, so it is divided by the chip's own 99.9th percentile (its maximum if
  that is not positive) and clipped to [0, 1]; negative values clip to 0.
- ``db``: ``20 * log10(amplitude / reference)`` with the nominal maximum as reference (the chip's
  maximum for float data), clipped to ``db_range`` and mapped linearly onto [0, 1].

With ``normalize`` the [0, 1] values are then standardised as ``(x - mean) / std``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from sarfewshot.data.io import SARImage, read_sar
from sarfewshot.errors import ConfigError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
AMPLITUDES = ("linear", "db")
_TINY = 1e-12


@dataclass(frozen=True)
class PreprocessSpec:
    """How a chip becomes a (1, size, size) tensor; the defaults are the release's preset."""

    crop: int | None = 128
    size: int = 224
    interpolation: str = "bicubic"
    amplitude: str = "linear"
    db_range: tuple = (-30.0, 0.0)
    normalize: bool = False
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "db_range", tuple(float(v) for v in self.db_range))
        if self.crop is not None and int(self.crop) <= 0:
            object.__setattr__(self, "crop", None)
        _check(self.size > 0, f"INPUT.SIZE must be positive, got {self.size}")
        _check(
            self.interpolation in INTERPOLATIONS,
            f"INPUT.INTERPOLATION {self.interpolation!r} is not one of {INTERPOLATIONS}",
        )
        _check(
            self.amplitude in AMPLITUDES,
            f"INPUT.SAR.AMPLITUDE {self.amplitude!r} is not one of {AMPLITUDES}",
        )
        lo_hi = self.db_range
        _check(
            len(lo_hi) == 2 and lo_hi[0] < lo_hi[1],
            f"INPUT.SAR.DB_RANGE must be (low, high) with low < high, got {lo_hi}",
        )
        _check(self.std > 0, f"INPUT.PIXEL_STD must be positive, got {self.std}")

    def key(self) -> str:
        """A short stable string naming this preprocessing (used in cache file names)."""
        parts = [f"c{self.crop or 0}", f"s{self.size}", self.interpolation, self.amplitude]
        if self.amplitude == "db":
            parts.append(f"{self.db_range[0]:g}_{self.db_range[1]:g}")
        if self.normalize:
            parts.append(f"n{self.mean:g}_{self.std:g}")
        return "-".join(parts)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _first(value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, (list, tuple)):
        return float(value[0]) if value else default
    return float(value)


def _square_size(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        _check(len(value) in (1, 2), f"INPUT.SIZE must be (H, W), got {value}")
        _check(value[0] == value[-1], f"INPUT.SIZE must be square for SAR chips, got {value}")
        return int(value[0])
    return int(value)


def spec_from_cfg(cfg: Any) -> PreprocessSpec:
    """Build the spec from a config's ``INPUT`` keys (missing keys take the release's values)."""
    inp = getattr(cfg, "INPUT", None)
    sar = getattr(inp, "SAR", None)
    normalize = bool(getattr(sar, "NORMALIZE", False))
    crop = getattr(sar, "CROP", 128)
    return PreprocessSpec(
        crop=int(crop) if crop else None,
        size=_square_size(getattr(inp, "SIZE", 224)),
        interpolation=str(getattr(inp, "INTERPOLATION", "bicubic")).lower(),
        amplitude=str(getattr(sar, "AMPLITUDE", "linear")).lower(),
        db_range=tuple(getattr(sar, "DB_RANGE", (-30.0, 0.0))),
        normalize=normalize,
        mean=_first(getattr(inp, "PIXEL_MEAN", None), 0.0) if normalize else 0.0,
        std=_first(getattr(inp, "PIXEL_STD", None), 1.0) if normalize else 1.0,
    )


def center_crop_pad(arr: np.ndarray, crop: int | None) -> np.ndarray:
    """Centre-crop a (H, W) array to ``crop`` x ``crop``, zero-padding sides that are too small.

    Same geometry as torchvision's ``CenterCrop`` on a PIL image (the release's transform):
    padding puts the extra pixel on the right/bottom, and the crop offset is
    ``round((H - crop) / 2)`` with Python's round-half-to-even.
    """
    if crop is None:
        return arr
    h, w = arr.shape
    pad_h, pad_w = max(crop - h, 0), max(crop - w, 0)
    if pad_h or pad_w:
        arr = np.pad(arr, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2)))
        h, w = arr.shape
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return arr[top : top + crop, left : left + crop]


def _resample(name: str) -> int:
    from PIL import Image

    return getattr(Image.Resampling, name.upper())


def preprocess_uint8(image: SARImage, spec: PreprocessSpec) -> np.ndarray | None:
    """The release's exact 8-bit path: (size, size) uint8, or None when it does not apply.

    It applies to 8-bit chips with linear amplitude; the division by 255 happens later
    (:func:`to_tensor`), so a cache can keep the exact bytes.
    """
    from PIL import Image

    if not image.is_8bit or spec.amplitude != "linear":
        return None
    chip = center_crop_pad(image.amplitude.astype(np.uint8), spec.crop)
    out = Image.fromarray(np.ascontiguousarray(chip, dtype=np.uint8))
    out = out.resize((spec.size, spec.size), resample=_resample(spec.interpolation))
    return np.array(out, dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)


def scale_to_unit(image: SARImage, spec: PreprocessSpec) -> np.ndarray:
    """Amplitude mapped to float32 [0, 1] by ``spec.amplitude`` (see the module docstring)."""
    amp = np.clip(image.amplitude.astype(np.float32), 0.0, None)
    if spec.amplitude == "db":
        ref = image.nominal_max or float(amp.max(initial=0.0))
        if ref <= 0:
            return np.zeros_like(amp)
        db = 20.0 * np.log10(np.maximum(amp, _TINY) / ref)
        lo, hi = spec.db_range
        return ((np.clip(db, lo, hi) - lo) / (hi - lo)).astype(np.float32)
    ref = image.nominal_max
    if ref is None:
        ref = float(np.percentile(amp, 99.9)) if amp.size else 0.0
        if ref <= 0:
            ref = float(amp.max(initial=0.0))
    if ref <= 0:
        return np.zeros_like(amp)
    return np.clip(amp / np.float32(ref), 0.0, 1.0).astype(np.float32)


def preprocess_float(image: SARImage, spec: PreprocessSpec) -> np.ndarray:
    """Scale, crop (zero padding) and resize in float: (size, size) float32 in [0, 1]."""
    from PIL import Image

    chip = center_crop_pad(scale_to_unit(image, spec), spec.crop)
    out = Image.fromarray(np.ascontiguousarray(chip, dtype=np.float32))
    out = out.resize((spec.size, spec.size), resample=_resample(spec.interpolation))
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def preprocess(image: SARImage, spec: PreprocessSpec) -> np.ndarray:
    """(size, size) result before normalisation: uint8 on the exact 8-bit path, else float32."""
    exact = preprocess_uint8(image, spec)
    return exact if exact is not None else preprocess_float(image, spec)


def to_tensor(arr: np.ndarray, spec: PreprocessSpec):
    """(1, S, S) float32 tensor: uint8 divided by 255 (as ToTensor), then optional normalisation."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(0)
    t = t.float().div(255.0) if t.dtype == torch.uint8 else t.float()
    if spec.normalize:
        t = (t - spec.mean) / spec.std
    return t


ImageLike = Union[SARImage, np.ndarray, str, Any]


def as_sar_image(x: ImageLike) -> SARImage:
    """Wrap an input as a :class:`SARImage`.

    A path is read with :func:`read_sar`; a numpy array's dtype gives its scale (uint8: 8-bit,
    uint16: 16-bit, float: no nominal maximum); a PIL image is converted like a file.
    """
    if isinstance(x, SARImage):
        return x
    if isinstance(x, np.ndarray):
        if x.ndim != 2:
            raise ValueError(f"expected a (H, W) amplitude array, got shape {x.shape}")
        nominal = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(x.dtype)
        return SARImage(amplitude=x.astype(np.float32), nominal_max=nominal)
    if hasattr(x, "mode") and hasattr(x, "size"):  # a PIL image
        from sarfewshot.data.io import pil_to_array

        amplitude, nominal = pil_to_array(x)
        return SARImage(amplitude=amplitude, nominal_max=nominal)
    return read_sar(x)


class EvalTransform:
    """Callable: image (SARImage, array, PIL image or path) -> (1, size, size) float32 tensor.

    A class rather than a closure so that DataLoader worker processes can pickle it.
    """

    def __init__(self, spec: PreprocessSpec) -> None:
        self.spec = spec

    def __call__(self, x: ImageLike):
        return to_tensor(preprocess(as_sar_image(x), self.spec), self.spec)

    def __repr__(self) -> str:
        return f"EvalTransform({self.spec.key()})"


def build_eval_transform(spec: PreprocessSpec | None = None) -> EvalTransform:
    """The evaluation transform for ``spec`` (default: the release's preset)."""
    return EvalTransform(spec or PreprocessSpec())
