"""An embedded generator of SAR-like vehicle chips: the default dataset when no data is at hand.

Each class is a vehicle-like layout of point scatterers on a rectangular body (tank, APC, truck,
...). A chip is formed the way a SAR amplitude chip looks, not by a full SAR simulation:

1. clutter of mean intensity ``CLUTTER``, a target body footprint of higher diffuse intensity
   and, behind the body in range (down the rows: the radar looks from the top), a radar shadow
   whose length follows the vehicle height at 17 deg depression;
2. multiplicative speckle on clutter and body: intensity times Gamma(L, 1/L), with L looks drawn
   per chip from 1..3;
3. bright point scatterers (Gaussian point-spread functions), each with a random gain and a 15 %
   chance of being hidden, on top of the speckled amplitude;
4. a random aspect angle (0-360 deg), a small position and scale jitter, and a linear 8-bit
   scaling like MSTAR's (dark clutter, bright scatterers).

Every chip comes from its own generator ``numpy_rng(seed, "synthetic", split, class, index)``,
so the same seed gives the same files, whatever the order or the counts. Chips are written as
8-bit PNG in the ``folder`` layout (``train|test/<class>/<class>_<index>.png``) with a marker
file ``.sarfewshot_synthetic.json`` that records the parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from sarfewshot.data.base import Listing, SARDataset
from sarfewshot.data.listing import progress
from sarfewshot.data.registry import DATASET_REGISTRY
from sarfewshot.datasets.folder import folder_listing
from sarfewshot.errors import DatasetError
from sarfewshot.utils.io import atomic_write_json
from sarfewshot.utils.seeding import numpy_rng

MARKER = ".sarfewshot_synthetic.json"
MARKER_FORMAT = "sarfewshot-synthetic"
GENERATOR_VERSION = 1
DEFAULTS = {"n_train_per_class": 40, "n_test_per_class": 40, "size": 128, "seed": 0}
CLUTTER = 0.05  # mean clutter intensity
BODY = 0.15  # mean diffuse intensity of the vehicle body
SHADOW = 0.04  # shadow intensity relative to clutter
AMPLITUDE_FULL_SCALE = 1.8  # amplitude written as 255
DEPRESSION_DEG = 17.0


@dataclass(frozen=True)
class Vehicle:
    """A vehicle layout in chip-size units: body length/width/height and scatterers (x, y, gain)."""

    name: str
    length: float
    width: float
    height: float
    points: tuple


def _pts(*groups: list) -> tuple:
    return tuple(p for g in groups for p in g)


def _line(x0: float, y0: float, x1: float, y1: float, n: int, gain: float) -> list:
    return [(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, gain) for t in np.linspace(0, 1, n)]


def _sides(length: float, width: float, n: int, gain: float) -> list:
    half = 0.42 * length
    return _line(-half, -width / 2, half, -width / 2, n, gain) + _line(
        -half, width / 2, half, width / 2, n, gain
    )


def _corners(length: float, width: float, gain: float) -> list:
    return [(sx * length / 2, sy * width / 2, gain) for sx in (-1, 1) for sy in (-1, 1)]


def _ring(xc: float, yc: float, r: float, n: int, gain: float) -> list:
    angles = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return [(xc + r * math.cos(a), yc + r * math.sin(a), gain) for a in angles]


def _grid(x0: float, x1: float, y0: float, y1: float, nx: int, ny: int, gain: float) -> list:
    return [(x, y, gain) for x in np.linspace(x0, x1, nx) for y in np.linspace(y0, y1, ny)]


VEHICLES = (
    Vehicle(
        "tank",
        0.28,
        0.16,
        0.035,
        _pts(
            _sides(0.28, 0.16, 5, 0.6),
            _ring(0.02, 0, 0.05, 6, 1.0),
            _line(0.07, 0, 0.30, 0, 5, 0.8),
        ),
    ),
    Vehicle(
        "apc",
        0.26,
        0.15,
        0.03,
        _pts(
            _corners(0.26, 0.15, 1.0),
            _sides(0.26, 0.15, 4, 0.7),
            _line(-0.13, -0.04, -0.13, 0.04, 3, 0.9),
        ),
    ),
    Vehicle(
        "truck",
        0.36,
        0.13,
        0.04,
        _pts(
            _grid(0.12, 0.18, -0.05, 0.05, 2, 3, 1.0),
            _sides(0.36, 0.13, 3, 0.5),
            _corners(0.24, 0.13, 0.7),
        ),
    ),
    Vehicle(
        "howitzer",
        0.30,
        0.17,
        0.04,
        _pts(
            _ring(-0.05, 0, 0.07, 8, 0.9),
            _line(0.02, 0, 0.40, 0, 7, 0.8),
            _sides(0.30, 0.17, 3, 0.5),
        ),
    ),
    Vehicle(
        "dozer",
        0.22,
        0.16,
        0.035,
        _pts(_line(0.15, -0.11, 0.15, 0.11, 7, 1.2), _corners(0.18, 0.16, 0.6), [(0.0, 0.0, 0.9)]),
    ),
    Vehicle("jeep", 0.14, 0.09, 0.025, _pts(_corners(0.14, 0.09, 0.8), [(0.02, 0.0, 1.0)])),
    Vehicle(
        "launcher",
        0.34,
        0.16,
        0.04,
        _pts(_grid(-0.15, 0.06, -0.05, 0.05, 4, 3, 0.9), _corners(0.34, 0.16, 0.6)),
    ),
    Vehicle(
        "radar",
        0.26,
        0.15,
        0.05,
        _pts(_ring(-0.03, 0, 0.09, 10, 0.9), _corners(0.26, 0.15, 0.6), [(-0.03, 0, 1.1)]),
    ),
    Vehicle(
        "bus", 0.42, 0.12, 0.045, _pts(_sides(0.42, 0.12, 8, 0.6), _line(-0.18, 0, 0.18, 0, 4, 0.5))
    ),
    Vehicle(
        "trailer",
        0.44,
        0.12,
        0.04,
        _pts(
            _corners(0.10, 0.12, 0.9),
            _grid(0.16, 0.2, -0.04, 0.04, 2, 2, 1.0),
            _corners(0.30, 0.12, 0.7),
            _sides(0.30, 0.12, 3, 0.4),
        ),
    ),
)
SYNTH_CLASSES = tuple(v.name for v in VEHICLES)
_BY_NAME = {v.name: v for v in VEHICLES}


def _body_coords(size: int, centre: np.ndarray, theta: float, scale: float):
    """Per-pixel (along-length, across-width) body coordinates in chip-size units."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    dr, dc = (rows - centre[0]) / size, (cols - centre[1]) / size
    c, s = math.cos(theta), math.sin(theta)
    return (c * dc + s * dr) / scale, (-s * dc + c * dr) / scale


def _footprint(v: Vehicle, size: int, centre: np.ndarray, theta: float, scale: float):
    u, w = _body_coords(size, centre, theta, scale)
    return (np.abs(u) <= v.length / 2) & (np.abs(w) <= v.width / 2)


def _shadow(body: np.ndarray, length_px: int) -> np.ndarray:
    """Pixels hidden behind the body in range (down the rows), excluding the body itself."""
    out = np.zeros_like(body)
    for k in range(1, length_px + 1):
        out[k:] |= body[:-k]
    return out & ~body


def _scatterers(v: Vehicle, size: int, centre, theta, scale, rng) -> np.ndarray:
    """Amplitude of the point scatterers (Gaussian PSFs) with random gains and hidden points."""
    pts = np.asarray(v.points, dtype=np.float32)
    keep = rng.random(len(pts)) > 0.15
    gains = pts[:, 2] * rng.lognormal(0.0, 0.35, len(pts)) * keep
    c, s = math.cos(theta), math.sin(theta)
    x, y = pts[:, 0] * scale * size, pts[:, 1] * scale * size
    pr, pc = centre[0] + s * x + c * y, centre[1] + c * x - s * y
    sigma = 0.6 * max(size / 64.0, 1.0)
    rows = np.arange(size, dtype=np.float32)
    gr = np.exp(-((rows[None, :] - pr[:, None]) ** 2) / (2 * sigma**2))
    gc = np.exp(-((rows[None, :] - pc[:, None]) ** 2) / (2 * sigma**2))
    return np.einsum("k,kr,kc->rc", gains.astype(np.float32), gr, gc)


def render_chip(vehicle: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size) uint8 chip of ``vehicle`` drawn with ``rng``."""
    v = _BY_NAME[vehicle]
    theta = rng.uniform(0.0, 2 * math.pi)
    scale = rng.uniform(0.95, 1.05)
    centre = size / 2 + rng.uniform(-0.04, 0.04, 2) * size
    body = _footprint(v, size, centre, theta, scale)
    shadow_px = int(round(v.height * scale * size / math.tan(math.radians(DEPRESSION_DEG))))
    intensity = np.full((size, size), CLUTTER, dtype=np.float32)
    intensity[_shadow(body, shadow_px)] *= SHADOW
    intensity[body] = BODY
    looks = int(rng.integers(1, 4))
    speckle = rng.gamma(looks, 1.0 / looks, (size, size)).astype(np.float32)
    amplitude = np.sqrt(intensity * speckle) + _scatterers(v, size, centre, theta, scale, rng)
    return np.clip(amplitude / AMPLITUDE_FULL_SCALE * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _write_png(path: Path, chip: np.ndarray) -> None:
    # Plain writes (no fsync per chip): an interrupted generation leaves no marker and is redone.
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(chip).save(path, format="PNG")


def generate_synthetic(
    out_dir: str | Path,
    n_train_per_class: int = DEFAULTS["n_train_per_class"],
    n_test_per_class: int = DEFAULTS["n_test_per_class"],
    size: int = DEFAULTS["size"],
    seed: int = DEFAULTS["seed"],
    classes: Sequence[str] = SYNTH_CLASSES,
    progress_bar: bool = True,
) -> Path:
    """Write a synthetic dataset (folder layout, 8-bit PNG) to ``out_dir``; returns the folder.

    Raises:
        DatasetError: an unknown class name or non-positive counts/size.
    """
    unknown = [c for c in classes if c not in _BY_NAME]
    if unknown or min(n_train_per_class, n_test_per_class) < 1 or size < 16:
        raise DatasetError(
            f"synthetic dataset: classes must be among {SYNTH_CLASSES} (got "
            f"unknown {unknown}), counts >= 1 and size >= 16"
        )
    out = Path(out_dir)
    jobs = [
        (split, c, i)
        for split, n in (("train", n_train_per_class), ("test", n_test_per_class))
        for c in classes
        for i in range(n)
    ]
    for split, cname, i in progress(jobs, desc="synthetic chips", enabled=progress_bar):
        chip = render_chip(cname, size, numpy_rng(seed, "synthetic", split, cname, i))
        _write_png(out / split / cname / f"{cname}_{i:05d}.png", chip)
    params = {
        "n_train_per_class": n_train_per_class,
        "n_test_per_class": n_test_per_class,
        "size": size,
        "seed": seed,
        "classes": list(classes),
    }
    atomic_write_json(
        out / MARKER, {"format": MARKER_FORMAT, "version": GENERATOR_VERSION, **params}
    )
    return out


def read_marker(root: Path) -> dict | None:
    """The generator parameters recorded in ``root``, or None when there is no marker."""
    try:
        data = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MARKER_FORMAT else None


def _is_generated_or_empty(root: Path) -> bool:
    """True when ``root`` is missing, empty, or only holds a (possibly interrupted) generation."""
    if not root.exists():
        return True
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    return all(
        p.is_dir()
        and p.name in ("train", "test")
        and all(c.name in _BY_NAME for c in p.iterdir() if not c.name.startswith("."))
        for p in entries
    )


def _remove_partial(root: Path) -> None:
    """Delete the chips of an interrupted generation (only files named like generated ones)."""
    for png in sorted(root.glob("*/*/*.png")) if root.exists() else []:
        if png.parent.name in _BY_NAME and png.name.startswith(png.parent.name + "_"):
            png.unlink()


@DATASET_REGISTRY.register("synthetic", aliases=("synth",))
class SyntheticSAR(SARDataset):
    """SAR-like vehicle chips generated into ``root`` on first use (folder train/test layout).

    Options: ``n_train_per_class``, ``n_test_per_class``, ``size``, ``seed``.
    """

    name = "synthetic"
    layout = "an empty folder (generated on first use) or one written by `sarfewshot data synth`"
    generates_root = True

    def _params(self) -> dict:
        return {k: int(self.options.get(k, v)) for k, v in DEFAULTS.items()}

    def ensure_generated(self, progress_bar: bool = True) -> None:
        """Generate the chips into ``root`` unless a matching generation is already there."""
        marker = read_marker(self.root)
        asked = {k: int(v) for k, v in self.options.items() if k in DEFAULTS}
        if marker is not None:
            differs = {k: marker.get(k) for k, v in asked.items() if marker.get(k) != v}
            if differs:
                raise DatasetError(
                    f"synthetic root {self.root} was generated with {differs}, "
                    f"not {asked}; use another root"
                )
            return
        if not _is_generated_or_empty(self.root):
            raise DatasetError(
                f"dataset root {self.root} is not empty and was not written by "
                f"the synthetic generator; give an empty or new folder "
                f"(or use --dataset folder for your own images)"
            )
        _remove_partial(self.root)
        generate_synthetic(self.root, progress_bar=progress_bar, **self._params())

    def list(self) -> Listing:
        """Generate on first use, then list the train/test folders."""
        self.ensure_generated()
        return folder_listing(self, stream=self.name)
