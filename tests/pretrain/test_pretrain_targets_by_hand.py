"""The SAR-JEPA gradient target pinned by numbers worked out by hand (no ../shared needed).

The release vectors in ``../shared/vectors`` pin the target too, but a checkout without them must
still notice a changed radius. The image is a vertical step edge, 40 x 40 px: columns 0-19 hold
0.19 and columns 20-39 hold 0.99, so after the spec's +0.01 shift the two sides are 0.2 and 1.0.
Every row is the same, so ``gy = 0`` and ``G_r = |gx|`` with ``gx = ln(left / right)``, where left
and right are the sums over the ``r + 1`` columns ending / starting at the centre column (the
row count ``2r + 1`` cancels). At the pixels used below no window reaches the border.

- centre column 20: left = r columns of 0.2 plus column 20 (1.0), right = r + 1 columns of 1.0,
  so ``G_r = -ln((0.2 r + 1) / (r + 1))``;
- centre column 19: left = r + 1 columns of 0.2, right = column 19 (0.2) plus r columns of 1.0,
  so ``G_r = -ln(0.2 (r + 1) / (0.2 + r))``.
"""

from __future__ import annotations

import math

import pytest
import torch

from sarfewshot.pretrain import targets as T

RADII = (5, 9, 13, 17)  # SAR-JEPA's radii (spec section 3, the release's config)
# -ln((0.2 r + 1) / (r + 1)) and -ln(0.2 (r + 1) / (0.2 + r)), to 4 decimals
AT_COLUMN_20 = {5: 1.0986, 9: 1.2730, 13: 1.3581, 17: 1.4088}
AT_COLUMN_19 = {5: 1.4663, 9: 1.5261, 13: 1.5506, 17: 1.5640}


def step_edge(size: int = 40, transpose: bool = False) -> torch.Tensor:
    img = torch.full((size, size), 0.99)
    img[:, : size // 2] = 0.19
    return (img.T if transpose else img).reshape(1, 1, size, size)


def test_the_hand_values_follow_from_the_formulas():
    for r in RADII:
        assert -math.log((0.2 * r + 1) / (r + 1)) == pytest.approx(AT_COLUMN_20[r], abs=5e-5)
        assert -math.log(0.2 * (r + 1) / (0.2 + r)) == pytest.approx(AT_COLUMN_19[r], abs=5e-5)


def test_the_default_radii_are_the_release_radii():
    from sarfewshot.configs import config_path
    from sarfewshot.pretrain.config import get_pretrain_cfg_default, setup_pretrain_cfg

    assert tuple(T.GF_RADII) == RADII
    assert tuple(get_pretrain_cfg_default().TARGET.RADII) == RADII
    cfg = setup_pretrain_cfg(config_path("pretrain", "sarjepa_vit_b16.yaml"))
    assert tuple(cfg.TARGET.RADII) == RADII


@pytest.mark.parametrize("transpose", [False, True])
def test_gradient_maps_at_a_step_edge(transpose):
    maps = T.ratio_gradient_maps(step_edge(transpose=transpose))  # default radii
    assert maps.shape == (1, len(RADII), 40, 40)
    for i, r in enumerate(RADII):
        for col, want in ((20, AT_COLUMN_20[r]), (19, AT_COLUMN_19[r])):
            # rows 10-29 (columns, when transposed): a horizontal edge gives gy, same magnitude
            line = maps[0, i, 10:30, col] if not transpose else maps[0, i, col, 10:30]
            assert torch.allclose(line, torch.full_like(line, want), atol=2e-4), (r, col)
        flat = maps[0, i, 10:30, 2] if not transpose else maps[0, i, 2, 10:30]
        assert torch.all(flat.abs() < 1e-6)  # uniform around column 2 (reflect padding)


def test_signed_gradients_point_from_bright_to_dark():
    gx, gy = T.ratio_gradients(step_edge(), radius=5)
    assert gx[0, 0, 20, 20].item() == pytest.approx(-AT_COLUMN_20[5], abs=2e-4)  # ln(left/right)
    assert torch.all(gy.abs() < 1e-6)
    gx, gy = T.ratio_gradients(step_edge(transpose=True), radius=5)
    assert gy[0, 0, 19, 20].item() == pytest.approx(-AT_COLUMN_19[5], abs=2e-4)  # ln(top/bottom)
    assert torch.all(gx.abs() < 1e-6)


def test_the_sarjepa_model_target_uses_those_maps_radius_major():
    from sarfewshot.configs import config_path
    from sarfewshot.pretrain.config import setup_pretrain_cfg
    from sarfewshot.pretrain.methods import build_pretrain_model

    cfg = setup_pretrain_cfg(config_path("pretrain", "sarjepa_tiny.yaml"))
    model = build_pretrain_model(cfg)
    size, p = int(cfg.INPUT.SIZE), int(cfg.MODEL.PATCH_SIZE)
    x = step_edge(size)
    target = model.compute_target(x)  # (1, L, len(RADII) * p * p)
    assert target.shape[-1] == len(RADII) * p * p
    # pixel (row 16, column size/2) lies in patch (16 // p, (size/2) // p) at offset (16 % p, 0)
    col = size // 2
    patch = (16 // p) * (size // p) + col // p
    for i, r in enumerate(RADII):
        value = target[0, patch, i * p * p + (16 % p) * p + col % p].item()
        assert value == pytest.approx(AT_COLUMN_20[r], abs=2e-4), r
