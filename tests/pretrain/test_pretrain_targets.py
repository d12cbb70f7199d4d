"""Pretraining targets: the GF target against the release's vectors and a direct definition,
the Gaussian variant, and the baselines' targets on the token grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sarfewshot.errors import ConfigError
from sarfewshot.pretrain import targets as T
from tests.pretrain.synthetic_sar import sar_batch


@pytest.fixture(scope="module")
def gf_vectors(vectors_dir):
    return np.load(vectors_dir / "gf_targets.npz")


@pytest.mark.parametrize("size", [224, 64])
def test_ratio_gradient_matches_release_vectors(gf_vectors, size):
    x = torch.from_numpy(gf_vectors[f"gf_input_{size}"])
    for r in T.GF_RADII:
        got = T.ratio_gradient(x, r).numpy()
        assert got.shape == (2, 1, size, size)
        assert np.abs(got - gf_vectors[f"gf_k{r}_{size}"]).max() <= 1e-4
    maps = T.ratio_gradient_maps(x).numpy()
    for i, r in enumerate(T.GF_RADII):
        assert np.abs(maps[:, i : i + 1] - gf_vectors[f"gf_k{r}_{size}"]).max() <= 1e-4


def test_sarjepa_target_matches_release_vectors(gf_vectors):
    got = T.sarjepa_target(torch.from_numpy(gf_vectors["gf_input_224"])).numpy()
    assert got.shape == (2, 196, 1024)
    assert np.abs(got - gf_vectors["gf_target_224"]).max() <= 1e-4


def _direct_halves(x: torch.Tensor, r: int, weights: torch.Tensor) -> torch.Tensor:
    """Half-window sums by explicit convolution with (4, 1, k, k) kernels."""
    xp = F.pad(x.double(), (r, r, r, r), mode="reflect") + 0.01
    return F.conv2d(xp, weights.double())


def _box_kernels(r: int) -> torch.Tensor:
    k = 2 * r + 1
    w = torch.zeros(4, 1, k, k)
    w[0, 0, :, : r + 1] = 1
    w[1, 0, :, r:] = 1
    w[2, 0, : r + 1, :] = 1
    w[3, 0, r:, :] = 1
    return w


@pytest.mark.parametrize("radius", [1, 3, 6])
def test_box_gradient_equals_direct_definition(radius):
    x = sar_batch(2, 20, seed=3)
    h = _direct_halves(x, radius, _box_kernels(radius))
    gx, gy = torch.log(h[:, 0:1] / h[:, 1:2]), torch.log(h[:, 2:3] / h[:, 3:4])
    ref = torch.sqrt(gx**2 + gy**2).float()
    assert torch.allclose(T.ratio_gradient(x, radius), ref, atol=1e-5)
    got_gx, got_gy = T.ratio_gradients(x, radius)
    assert torch.allclose(got_gx, gx.float(), atol=1e-5)
    assert torch.allclose(got_gy, gy.float(), atol=1e-5)


def test_gauss_gradient_equals_documented_weighting():
    r = 4
    sigma = 0.3 * (r - 1) + 0.8
    d = torch.arange(-r, r + 1, dtype=torch.float64)
    g2 = torch.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma**2))
    w = torch.zeros(4, 1, 2 * r + 1, 2 * r + 1, dtype=torch.float64)
    w[0, 0, :, :r] = g2[:, :r]  # left: columns -r..-1, centre column excluded
    w[1, 0, :, r + 1 :] = g2[:, r + 1 :]
    w[2, 0, :r, :] = g2[:r, :]
    w[3, 0, r + 1 :, :] = g2[r + 1 :, :]
    x = sar_batch(2, 24, seed=5)
    h = _direct_halves(x, r, w)
    ref = torch.sqrt(torch.log(h[:, 0:1] / h[:, 1:2]) ** 2 + torch.log(h[:, 2:3] / h[:, 3:4]) ** 2)
    got = T.ratio_gradient(x, r, kernel="gauss")
    assert torch.allclose(got, ref.float(), atol=1e-5)
    assert not torch.allclose(got, T.ratio_gradient(x, r), atol=1e-3)


def test_gradient_of_constant_image_is_zero():
    x = torch.full((1, 1, 32, 32), 0.3)
    for kernel in ("box", "gauss"):
        assert T.ratio_gradient(x, 5, kernel).abs().max() < 1e-6


def test_gradient_rejects_bad_input():
    with pytest.raises(ConfigError, match="radius"):
        T.ratio_gradient(torch.rand(1, 1, 8, 8), 9)
    with pytest.raises(ConfigError, match="kernel"):
        T.ratio_gradient(torch.rand(1, 1, 16, 16), 2, kernel="median")
    with pytest.raises(ConfigError, match=r"\(B, 1, H, W\)"):
        T.ratio_gradient(torch.rand(1, 3, 16, 16), 2)


def test_patchify_is_raster_and_radius_major():
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(1, 2, 8, 8)
    p = T.patchify(x, 4)
    assert p.shape == (1, 4, 32)
    # patch 1 = rows 0-3, columns 4-7; channel 0 first, row-major inside the patch
    assert p[0, 1, :4].tolist() == [4.0, 5.0, 6.0, 7.0]
    assert p[0, 1, 16:20].tolist() == [68.0, 69.0, 70.0, 71.0]
    with pytest.raises(ConfigError, match="multiple"):
        T.patchify(x, 3)


KINDS = ["gf", "gf_gauss", "pixel", "log_pixel", "lowpass", "hog", "sar_hog"]


@pytest.mark.parametrize("patch", [8, 16])
@pytest.mark.parametrize("kind", KINDS)
def test_every_target_fits_the_token_grid(kind, patch):
    x = sar_batch(2, 64, seed=1)
    opts = {"radii": (3, 5)} if kind in ("gf", "gf_gauss", "sar_hog") else {}
    t = T.compute_target(kind, x, patch, **opts)
    assert t.shape == (2, (64 // patch) ** 2, T.target_dim(kind, patch, **opts))
    assert t.dtype == torch.float32 and torch.isfinite(t).all()


def test_pixel_targets():
    x = sar_batch(1, 32, seed=2)
    raw = T.pixel_target(x, 8)
    assert torch.equal(raw[0, 0], x[0, 0, :8, :8].reshape(-1))
    norm = T.pixel_target(x, 8, normalize=True)
    assert torch.allclose(norm.mean(-1), torch.zeros(1, 16), atol=1e-5)
    assert torch.allclose(T.log_pixel_target(x, 8), torch.log(raw + 0.01))


def test_lowpass_keeps_constants_and_smooths():
    assert torch.allclose(T.lowpass_target(torch.full((1, 1, 32, 32), 0.4), 8), torch.tensor(0.4))
    x = sar_batch(1, 64, seed=4)
    assert T.lowpass_target(x, 8).var() < T.pixel_target(x, 8).var()


def test_hog_cells_are_unit_norm_and_orientation_binned():
    # a vertical step edge: horizontal gradient -> orientation 0 -> bin 0
    x = torch.zeros(1, 1, 16, 16)
    x[..., 8:] = 1.0
    hog = T.hog_target(x, 16)
    assert hog.shape == (1, 1, 4 * 9)
    cells = hog.reshape(4, 9)
    assert torch.allclose(cells.norm(dim=1), torch.ones(4), atol=1e-4)
    assert (cells.argmax(dim=1) == 0).all()
    # a horizontal edge votes in the middle bin (pi / 2)
    hog_t = T.hog_target(x.transpose(-1, -2).contiguous(), 16).reshape(4, 9)
    assert (hog_t.argmax(dim=1) == int(math.pi / 2 / (math.pi / 9))).all()


def test_sar_hog_bins_ratio_gradients_per_radius():
    x = sar_batch(2, 32, seed=6)
    one = T.sar_hog_target(x, 16, radii=(3,))
    two = T.sar_hog_target(x, 16, radii=(3, 5))
    assert one.shape == (2, 4, 36) and two.shape == (2, 4, 72)
    assert torch.allclose(two[..., :36], one)
    assert not torch.allclose(one, T.hog_target(x, 16), atol=1e-3)
