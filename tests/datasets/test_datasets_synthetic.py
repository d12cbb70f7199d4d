"""The embedded synthetic SAR dataset: deterministic, SAR-like, written in the folder layout."""

from __future__ import annotations

import numpy as np
import pytest

from sarfewshot.data.build import build_listing
from sarfewshot.data.io import read_sar
from sarfewshot.datasets import synthetic
from sarfewshot.datasets.synthetic import SYNTH_CLASSES, generate_synthetic, render_chip
from sarfewshot.errors import DatasetError
from sarfewshot.utils.seeding import numpy_rng


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_generator_is_deterministic_by_seed(tmp_path):
    assert len(SYNTH_CLASSES) >= 8
    a = generate_synthetic(tmp_path / "a", 2, 1, size=32, seed=0, progress_bar=False)
    b = generate_synthetic(tmp_path / "b", 2, 1, size=32, seed=0, progress_bar=False)
    c = generate_synthetic(tmp_path / "c", 2, 1, size=32, seed=1, progress_bar=False)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert len(fa) == 3 * len(SYNTH_CLASSES) and fa == fb
    assert fa.keys() == fc.keys() and all(fa[k] != fc[k] for k in fa)
    # a chip does not depend on how many others were generated
    d = generate_synthetic(tmp_path / "d", 1, 1, size=32, seed=0, progress_bar=False)
    assert _files(d)["train/tank/tank_00000.png"] == fa["train/tank/tank_00000.png"]
    img = read_sar(a / "train" / "tank" / "tank_00000.png")
    assert img.is_8bit and img.amplitude.shape == (32, 32)


def test_chips_look_like_sar_targets():
    chips = np.stack([render_chip("tank", 64, numpy_rng(0, "t", i)) for i in range(8)])
    clutter = np.concatenate([chips[:, :6, :].ravel(), chips[:, -6:, :].ravel()]).astype(float)
    centre = chips[:, 24:40, 24:40].astype(float)
    assert clutter.mean() < 60  # dark clutter, like MSTAR's linear magnitude chips
    assert centre.max(axis=(1, 2)).min() > 2 * clutter.mean()  # a bright target in every chip
    assert clutter.std() / clutter.mean() > 0.3  # speckle: strong multiplicative fluctuation
    assert not np.array_equal(chips[0], chips[1])  # random aspect and speckle
    body = np.zeros((10, 10), bool)
    body[2:4, 3:6] = True
    shadow = synthetic._shadow(body, 3)
    assert shadow[4:7, 3:6].all() and shadow.sum() == 9  # right behind the body, down range


def test_plugin_generates_into_empty_root_and_lists(tmp_path):
    root = tmp_path / "synth"
    ds, listing = build_listing("synthetic", root, n_train_per_class=3, n_test_per_class=2, size=32)
    assert (root / synthetic.MARKER).is_file()
    assert listing.classnames == sorted(SYNTH_CLASSES)
    assert len(listing.train) == 3 * len(SYNTH_CLASSES)
    assert len(listing.test) == 2 * len(SYNTH_CLASSES)
    files = _files(root)
    _, again = build_listing("synth", root)  # reused, not regenerated
    assert again.sha256() == listing.sha256() and _files(root) == files
    with pytest.raises(DatasetError, match="generated with"):
        build_listing("synthetic", root, n_train_per_class=5)
    other = tmp_path / "mine"
    (other / "photos").mkdir(parents=True)
    with pytest.raises(DatasetError, match="not empty"):
        build_listing("synthetic", other)


def test_interrupted_generation_is_redone(tmp_path):
    root = tmp_path / "synth"
    generate_synthetic(root, 1, 1, size=32, progress_bar=False)
    (root / synthetic.MARKER).unlink()  # as if interrupted before the end
    (root / "train" / "tank" / "tank_00007.png").write_bytes(b"partial")
    _, listing = build_listing("synthetic", root, n_train_per_class=1, n_test_per_class=1, size=32)
    assert len(listing.train) == len(SYNTH_CLASSES)
    assert not (root / "train" / "tank" / "tank_00007.png").exists()
