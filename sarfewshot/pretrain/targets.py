"""Pretraining targets: the multi-scale SAR gradient (GF) target and the baselines' targets.

Every target takes images ``x`` of shape ``(B, 1, H, W)`` in [0, 1] and returns per-patch
vectors ``(B, L, D)`` on the encoder's token grid (``L = (H / p) * (W / p)`` patches in raster
order), so any target can be paired with any masking rule. Targets are computed without
gradients, in float32 (the box sums of the GF target in float64).

GF target (spec section 3): for a radius ``r`` the image is reflect-padded by ``r``, shifted by
``+0.01``, and four half-window sums of the ``(2r+1) x (2r+1)`` window are taken (left/right: the
``r + 1`` columns on either side *including* the centre column; top/bottom likewise with rows).
``gx = ln(left / right)``, ``gy = ln(top / bottom)`` and ``G_r = sqrt(gx^2 + gy^2)``. The sums come
from a summed-area table, so the cost per radius is O(H * W) whatever the radius.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from sarfewshot.errors import ConfigError

GF_RADII = (5, 9, 13, 17)
GF_EPS = 0.01


def _check_images(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 1:
        raise ConfigError(f"targets expect images of shape (B, 1, H, W); got {tuple(x.shape)}")


def _check_radius(x: torch.Tensor, radius: int) -> None:
    if radius < 1:
        raise ConfigError(f"gradient radius must be >= 1; got {radius}")
    if radius >= min(x.shape[-2:]):
        raise ConfigError(
            f"gradient radius {radius} needs images larger than {radius} px for reflect padding; "
            f"got {tuple(x.shape[-2:])}"
        )


def _sum_dtype(x: torch.Tensor) -> torch.dtype:
    # float32 prefix sums over a 258x258 table lose ~1e-5 relative precision; float64 keeps the
    # box sums exact to float32 rounding. MPS has no float64, so it stays in float32 there.
    return torch.float32 if x.device.type == "mps" else torch.float64


def summed_area_table(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Summed-area table of the reflect-padded, shifted image, with a leading zero row and column.

    ``S[..., i, j]`` is the sum of ``pad_reflect(x, pad) + 0.01`` over rows ``< i`` and columns
    ``< j``; shape (B, 1, H + 2 pad + 1, W + 2 pad + 1), float64 (see :func:`_sum_dtype`). Reflect
    padding by a smaller radius is a crop of this one, so one table serves every radius <= pad.
    """
    # +0.01 in float32 as the release does, before widening for the prefix sums
    xp = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect").add_(GF_EPS)
    b, c, hp, wp = xp.shape
    s = torch.zeros(b, c, hp + 1, wp + 1, dtype=_sum_dtype(x), device=x.device)
    s[..., 1:, 1:] = xp
    return s.cumsum_(-2).cumsum_(-1)


def _box_log_gradients(
    s: torch.Tensor, pad: int, radius: int, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gx, gy)`` of the box kernel at ``radius`` from a table built with ``pad >= radius``.

    Left and right halves are the same (r + 1)-column box sums shifted by r columns, so one log
    of the shared box sums serves both (likewise top/bottom with rows).
    """
    r, k, o = radius, 2 * radius + 1, pad - radius
    cols = slice(o, o + w + k)
    strips = s[..., o + k : o + k + h, cols] - s[..., o : o + h, cols]  # (2r+1)-row strips
    lx = (strips[..., r + 1 :] - strips[..., : -(r + 1)]).float().log_()
    gx = lx[..., :w] - lx[..., r : r + w]
    rows = slice(o, o + h + k)
    strips = s[..., rows, o + k : o + k + w] - s[..., rows, o : o + w]  # (2r+1)-column strips
    ly = (strips[..., r + 1 :, :] - strips[..., : -(r + 1), :]).float().log_()
    gy = ly[..., :h, :] - ly[..., r : r + h, :]
    return gx, gy


def gauss_sigma(radius: int) -> float:
    """Sigma of the Gaussian-kernel GF variant: ``0.3 * (r - 1) + 0.8`` (OpenCV's size rule)."""
    return 0.3 * (radius - 1) + 0.8


def _gauss_1d(radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    d = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    return torch.exp(-(d**2) / (2.0 * gauss_sigma(radius) ** 2))


def _sep_conv(xp: torch.Tensor, kv: torch.Tensor, kh: torch.Tensor) -> torch.Tensor:
    """Valid-mode correlation with the separable kernel ``kv[:, None] * kh[None, :]``."""
    out = F.conv2d(xp, kv.view(1, 1, -1, 1))
    return F.conv2d(out, kh.view(1, 1, 1, -1))


def _gauss_halves(x: torch.Tensor, radius: int) -> tuple[torch.Tensor, ...]:
    """(left, right, top, bottom) Gaussian-weighted half-window sums, centre line excluded.

    The weight of offset (dy, dx) in [-r, r]^2 is ``exp(-(dx^2 + dy^2) / (2 sigma^2))``; left keeps
    dx in [-r, -1] (all dy), right dx in [1, r], top dy in [-r, -1] (all dx), bottom dy in [1, r].
    The weights are not normalised: both halves of a pair carry the same total weight, so the
    normalisation would cancel in the log ratio.
    """
    r = radius
    xp = F.pad(x.to(_sum_dtype(x)), (r, r, r, r), mode="reflect") + GF_EPS
    g = _gauss_1d(r, xp.dtype, xp.device)
    neg = g.clone()
    neg[r:] = 0.0
    pos = g.clone()
    pos[: r + 1] = 0.0
    left = _sep_conv(xp, g, neg)
    right = _sep_conv(xp, g, pos)
    top = _sep_conv(xp, neg, g)
    bottom = _sep_conv(xp, pos, g)
    return left, right, top, bottom


def ratio_gradients(
    x: torch.Tensor, radius: int, kernel: str = "box"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ratio-of-averages gradients ``(gx, gy)`` = ``(ln(left/right), ln(top/bottom))``.

    Args:
        x: images (B, 1, H, W) in [0, 1].
        radius: half-window radius r (window 2r + 1).
        kernel: ``"box"`` (the spec's GF: unweighted halves of r + 1 lines, centre line included,
            via a summed-area table) or ``"gauss"`` (Gaussian-weighted halves of r lines, centre
            line excluded, sigma = 0.3 (r - 1) + 0.8; see :func:`_gauss_halves`).

    Returns:
        ``gx, gy`` as float32 tensors (B, 1, H, W).
    """
    _check_images(x)
    _check_radius(x, radius)
    if kernel == "box":
        s = summed_area_table(x, radius)
        return _box_log_gradients(s, radius, radius, x.shape[-2], x.shape[-1])
    if kernel == "gauss":
        left, right, top, bottom = _gauss_halves(x, radius)
        return torch.log(left / right).float(), torch.log(top / bottom).float()
    raise ConfigError(f"unknown gradient kernel {kernel!r}; use 'box' or 'gauss'")


@torch.no_grad()
def ratio_gradient(x: torch.Tensor, radius: int, kernel: str = "box") -> torch.Tensor:
    """The spec's G_r: ``sqrt(gx^2 + gy^2)`` of :func:`ratio_gradients`, shape (B, 1, H, W)."""
    gx, gy = ratio_gradients(x, radius, kernel)
    return torch.hypot(gx, gy)


@torch.no_grad()
def ratio_gradient_maps(
    x: torch.Tensor, radii: Sequence[int] = GF_RADII, kernel: str = "box"
) -> torch.Tensor:
    """G_r for several radii stacked as channels, (B, len(radii), H, W).

    With the box kernel one summed-area table (padded by the largest radius) serves every radius,
    so the cost is O(H * W) per radius plus one table.
    """
    _check_images(x)
    radii = [int(r) for r in radii]
    if not radii:
        raise ConfigError("the gradient target needs at least one radius (TARGET.RADII)")
    if kernel != "box":
        return torch.cat([ratio_gradient(x, r, kernel) for r in radii], dim=1)
    for r in radii:
        _check_radius(x, r)
    pad = max(radii)
    s = summed_area_table(x, pad)
    h, w = x.shape[-2:]
    maps = [torch.hypot(*_box_log_gradients(s, pad, r, h, w)) for r in radii]
    return torch.cat(maps, dim=1)


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, C * p * p): patches in raster order, channel-major inside a patch.

    With one channel per radius this is the spec's radius-major concatenation of each radius's
    16 x 16 patch flattened row-major.
    """
    b, c, h, w = x.shape
    p = patch_size
    if h % p or w % p:
        raise ConfigError(f"image size {h}x{w} is not a multiple of the patch size {p}")
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


@torch.no_grad()
def sarjepa_target(
    x: torch.Tensor,
    radii: Sequence[int] = GF_RADII,
    patch_size: int = 16,
    kernel: str = "box",
) -> torch.Tensor:
    """The multi-scale GF target: (B, L, p * p * len(radii)), radius-major per patch.

    Args:
        x: images (B, 1, H, W) in [0, 1].
        radii: gradient radii (the release uses 5, 9, 13, 17).
        patch_size: the encoder's patch size p.
        kernel: ``"box"`` (SAR-JEPA) or ``"gauss"`` (the Gaussian-kernel baseline).
    """
    return patchify(ratio_gradient_maps(x, radii, kernel), patch_size)


@torch.no_grad()
def pixel_target(x: torch.Tensor, patch_size: int = 16, normalize: bool = False) -> torch.Tensor:
    """Patchified pixels (B, L, p * p); ``normalize`` standardises each patch (MAE's
    ``norm_pix_loss``: subtract the patch mean, divide by sqrt(var + 1e-6), unbiased var)."""
    _check_images(x)
    t = patchify(x.float(), patch_size)
    return _normalize_patches(t) if normalize else t


def _normalize_patches(t: torch.Tensor) -> torch.Tensor:
    mean = t.mean(dim=-1, keepdim=True)
    var = t.var(dim=-1, keepdim=True)
    return (t - mean) / torch.sqrt(var + 1e-6)


@torch.no_grad()
def log_pixel_target(
    x: torch.Tensor, patch_size: int = 16, normalize: bool = False
) -> torch.Tensor:
    """Patchified log-amplitude ``ln(x + 0.01)`` (speckle is multiplicative, so the log makes it
    additive), optionally per-patch standardised. The target of the ``lomar_sar`` baseline."""
    _check_images(x)
    t = patchify(torch.log(x.float() + GF_EPS), patch_size)
    return _normalize_patches(t) if normalize else t


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, kernel radius ceil(3 sigma), reflect padding, unit-sum kernel."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    if radius >= min(x.shape[-2:]):
        raise ConfigError(f"low-pass sigma {sigma} is too large for {tuple(x.shape[-2:])} images")
    d = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-(d**2) / (2.0 * sigma**2))
    k = k / k.sum()
    xp = F.pad(x.float(), (radius, radius, radius, radius), mode="reflect")
    return _sep_conv(xp, k, k)


@torch.no_grad()
def lowpass_target(x: torch.Tensor, patch_size: int = 16, sigma: float = 2.0) -> torch.Tensor:
    """Patchified low-pass filtered image (B, L, p * p).

    The filter is a Gaussian blur with standard deviation ``sigma`` pixels (default 2, a cut-off
    around 1/(2 pi sigma) ~ 0.08 cycles/pixel), truncated at 3 sigma, reflect padding.
    """
    _check_images(x)
    return patchify(gaussian_blur(x, sigma), patch_size)


def _sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel gradients (gx along columns, gy along rows), reflect padding, float32."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device).view(
        1, 1, 3, 3
    )
    xp = F.pad(x.float(), (1, 1, 1, 1), mode="reflect")
    gx = F.conv2d(xp, kx)
    gy = F.conv2d(xp, kx.transpose(-1, -2))
    return gx, gy


def hog_cells(gx: torch.Tensor, gy: torch.Tensor, nbins: int = 9, cell: int = 8) -> torch.Tensor:
    """Cell histograms of oriented gradients, (B, nbins, H / cell, W / cell).

    Unsigned orientation ``atan2(gy, gx) mod pi`` is split into ``nbins`` equal bins (hard
    assignment); each pixel votes its gradient magnitude; votes are summed per ``cell x cell`` cell
    and each cell's histogram is L2-normalised (eps 1e-6).
    """
    b, _, h, w = gx.shape
    if h % cell or w % cell:
        raise ConfigError(f"HOG cell {cell} does not divide the image size {h}x{w}")
    mag = torch.sqrt(gx * gx + gy * gy)
    phase = torch.remainder(torch.atan2(gy, gx), math.pi)
    bins = torch.clamp((phase / math.pi * nbins).long(), max=nbins - 1)
    votes = torch.zeros(b, nbins, h, w, dtype=mag.dtype, device=mag.device)
    votes.scatter_(1, bins, mag)
    hist = F.avg_pool2d(votes, cell) * (cell * cell)
    return F.normalize(hist, p=2.0, dim=1, eps=1e-6)


def _cells_to_patches(hist: torch.Tensor, patch_size: int, cell: int) -> torch.Tensor:
    """(B, nbins, H/c, W/c) -> (B, L, (p/c)^2 * nbins): the cells of each patch, raster order,
    each cell's bins contiguous."""
    if patch_size % cell:
        raise ConfigError(f"HOG cell {cell} does not divide the patch size {patch_size}")
    b, nb, hc, wc = hist.shape
    k = patch_size // cell
    t = hist.reshape(b, nb, hc // k, k, wc // k, k).permute(0, 2, 4, 3, 5, 1)
    return t.reshape(b, (hc // k) * (wc // k), k * k * nb)


def hog_cell_size(patch_size: int, cell: int = 8) -> int:
    """The HOG cell used for a patch size: ``cell``, or the patch itself when it is smaller."""
    return min(cell, patch_size)


@torch.no_grad()
def hog_target(
    x: torch.Tensor, patch_size: int = 16, nbins: int = 9, cell: int = 8
) -> torch.Tensor:
    """MaskFeat / FG-MAE-style HOG of the pixels (Sobel gradients), (B, L, (p/c)^2 * nbins)."""
    _check_images(x)
    c = hog_cell_size(patch_size, cell)
    gx, gy = _sobel(x)
    return _cells_to_patches(hog_cells(gx, gy, nbins, c), patch_size, c)


@torch.no_grad()
def sar_hog_target(
    x: torch.Tensor,
    patch_size: int = 16,
    radii: Sequence[int] = (5,),
    nbins: int = 9,
    cell: int = 8,
) -> torch.Tensor:
    """SAR-HOG: HOG binning of the ratio-of-averages gradients (box kernel), one HOG per radius,
    concatenated radius-major: (B, L, len(radii) * (p/c)^2 * nbins)."""
    _check_images(x)
    c = hog_cell_size(patch_size, cell)
    parts = []
    for r in radii:
        gx, gy = ratio_gradients(x, int(r), "box")
        parts.append(_cells_to_patches(hog_cells(gx, gy, nbins, c), patch_size, c))
    return torch.cat(parts, dim=-1)


def target_dim(kind: str, patch_size: int, **opts) -> int:
    """Per-patch size of a target kind (``gf``, ``gf_gauss``, ``pixel``, ``log_pixel``,
    ``lowpass``, ``hog``, ``sar_hog``) for a patch size, given the target options."""
    p2 = patch_size * patch_size
    if kind in ("gf", "gf_gauss"):
        return p2 * len(opts.get("radii", GF_RADII))
    if kind in ("pixel", "log_pixel", "lowpass"):
        return p2
    c = hog_cell_size(patch_size, opts.get("cell", 8))
    per = (patch_size // c) ** 2 * opts.get("nbins", 9)
    if kind == "hog":
        return per
    if kind == "sar_hog":
        return per * len(opts.get("radii", (5,)))
    raise ConfigError(f"unknown target kind {kind!r}")


def compute_target(kind: str, x: torch.Tensor, patch_size: int, **opts) -> torch.Tensor:
    """Dispatch to the target named ``kind`` (see :func:`target_dim`); returns (B, L, D)."""
    if kind == "gf":
        return sarjepa_target(x, opts.get("radii", GF_RADII), patch_size, "box")
    if kind == "gf_gauss":
        return sarjepa_target(x, opts.get("radii", GF_RADII), patch_size, "gauss")
    if kind == "pixel":
        return pixel_target(x, patch_size, opts.get("normalize", False))
    if kind == "log_pixel":
        return log_pixel_target(x, patch_size, opts.get("normalize", False))
    if kind == "lowpass":
        return lowpass_target(x, patch_size, opts.get("sigma", 2.0))
    if kind == "hog":
        return hog_target(x, patch_size, opts.get("nbins", 9), opts.get("cell", 8))
    if kind == "sar_hog":
        return sar_hog_target(
            x, patch_size, opts.get("radii", (5,)), opts.get("nbins", 9), opts.get("cell", 8)
        )
    raise ConfigError(f"unknown target kind {kind!r}")
