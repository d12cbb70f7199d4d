"""Real MSTAR data from ../shared/data (skipped with a message when it is absent)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sarfewshot.data.build import build_listing
from sarfewshot.data.io import read_mstar_phoenix, read_sar, read_sar_image
from sarfewshot.data.transforms import center_crop_pad

pytestmark = pytest.mark.realdata

# data/README.md: TRAIN / TEST counts per class
MSTAR_COUNTS = {
    "2S1": (299, 274),
    "BMP2": (233, 195),
    "BRDM2": (298, 274),
    "BTR60": (256, 195),
    "BTR70": (233, 196),
    "D7": (299, 274),
    "T62": (298, 273),
    "T72": (232, 196),
    "ZIL131": (299, 274),
    "ZSU234": (299, 274),
}


def test_mstar_soc_listing_counts(mstar_soc_root):
    ds, listing = build_listing("mstar", mstar_soc_root)
    assert len(listing.train) == 2746 and len(listing.test) == 2425
    train, test = (
        Counter(d.classname for d in listing.train),
        Counter(d.classname for d in listing.test),
    )
    assert {c: (train[c], test[c]) for c in listing.classnames} == MSTAR_COUNTS
    assert listing.classnames == list(MSTAR_COUNTS)  # the release's order


def _matched(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop both to their common size (raw chips and JPEGs may differ by a few pixels)."""
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    side = min(h, w)
    return center_crop_pad(a, side), center_crop_pad(b, side)


@pytest.mark.parametrize(
    "cls,raw", [("BMP2", "HB03787.000"), ("BTR70", "HB03787.004"), ("T72", "HB03787.015")]
)
def test_raw_magnitude_matches_release_jpeg(mstar_soc_root, mstar_raw_root, cls, raw):
    mag = read_sar_image(mstar_raw_root / "17_DEG" / cls / raw)
    jpeg = read_sar_image(mstar_soc_root / "MSTAR_SOC" / "TRAIN" / cls / "hb03787.jpeg")
    a, b = _matched(mag, jpeg)
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert r > 0.85, f"{cls}: correlation {r:.3f}"


def test_raw_headers_and_slicy(mstar_raw_root):
    img = read_mstar_phoenix(mstar_raw_root / "17_DEG" / "BMP2" / "HB03787.000")
    assert img.header["NumberOfRows"] == "128" and img.header["NumberOfColumns"] == "128"
    assert img.header["TargetType"] == "bmp2_tank" and img.header["TargetSerNum"] == "9563"
    assert img.header["DesiredDepression"] == "17"
    assert img.amplitude.shape == img.phase.shape == (128, 128)
    assert img.amplitude.min() >= 0
    # MSTAR phase is stored in [0, 2 pi): a speckle phase spreads uniformly over that range
    assert img.phase.min() >= 0 and img.phase.max() <= 2 * np.pi + 1e-3 and img.phase.std() > 1
    slicy = read_sar(mstar_raw_root / "15_DEG" / "SLICY" / "HB14931.015")
    assert slicy.amplitude.shape == (54, 54) and slicy.header["DesiredDepression"] == "15"


def test_mstar_raw_listing(mstar_raw_root):
    _, listing = build_listing("mstar_raw", mstar_raw_root)
    assert Counter(d.classname for d in listing.train) == {"BMP2": 3, "BTR70": 1, "T72": 1}
    assert [d.impath for d in listing.test] == ["15_DEG/SLICY/HB14931.015"]
