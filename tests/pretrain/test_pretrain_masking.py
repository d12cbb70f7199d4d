"""Masking rules: local windows per image, MAE random masks, I-JEPA multi-block masks."""

from __future__ import annotations

import pytest
import torch

from sarfewshot.errors import ConfigError
from sarfewshot.pretrain.masking import (
    gather_tokens,
    local_window_masks,
    multiblock_masks,
    num_masked,
    random_masks,
)
from sarfewshot.utils.seeding import torch_generator


def test_release_window_geometry():
    m = local_window_masks(6, 14, 7, 4, 0.8, torch_generator(0, "w"))
    assert m.index.shape == (6, 4, 49) and m.mask.shape == (6, 4, 49)
    assert (m.mask.sum(-1) == 39).all()  # int(49 * 0.8)
    assert m.index.min() >= 0 and m.index.max() < 196
    rows, cols = m.index // 14, m.index % 14
    # each window is a 7x7 block in raster order
    assert (rows.amax(-1) - rows.amin(-1) == 6).all() and (cols.amax(-1) - cols.amin(-1) == 6).all()
    assert torch.equal(rows[..., :7], rows[..., :1].expand(-1, -1, 7))
    assert (torch.diff(m.index, dim=-1) > 0).all()


def test_windows_are_drawn_per_image_and_reproducible():
    a = local_window_masks(8, 14, 7, 4, 0.8, torch_generator(1, "w"))
    b = local_window_masks(8, 14, 7, 4, 0.8, torch_generator(1, "w"))
    c = local_window_masks(8, 14, 7, 4, 0.8, torch_generator(2, "w"))
    assert torch.equal(a.index, b.index) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.index, c.index)
    # the release shared positions across the batch; here images differ
    assert len({tuple(a.index[i, :, 0].tolist()) for i in range(8)}) > 1


def test_window_errors_name_the_key():
    with pytest.raises(ConfigError, match="MASK.WINDOW"):
        local_window_masks(1, 4, 5, 4, 0.8)
    with pytest.raises(ConfigError, match="MASK.RATIO"):
        num_masked(49, 1.0)


def test_gather_tokens():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    index = torch.tensor([[[4, 0]], [[1, 1]]])
    out = gather_tokens(tokens, index)
    assert out.shape == (2, 1, 2, 3)
    assert torch.equal(out[0, 0, 0], tokens[0, 4]) and torch.equal(out[1, 0, 1], tokens[1, 1])


def test_random_masks_keep_visible_patches_in_order():
    m = random_masks(3, 196, 0.75, torch_generator(0, "r"))
    assert (m.mask.sum(1) == 147).all()
    assert m.keep.shape == (3, 49)
    assert (torch.diff(m.keep, dim=1) > 0).all()
    assert not m.mask.gather(1, m.keep).any()


def test_multiblock_context_excludes_targets():
    m = multiblock_masks(5, 14, generator=torch_generator(0, "b"))
    b, nb, nt = m.targets.shape
    assert (b, nb) == (5, 4) and nt >= 1
    assert m.context.shape[0] == 5 and m.context.shape[1] >= 1
    for i in range(5):
        assert not set(m.context[i].tolist()) & set(m.targets[i].flatten().tolist())
    again = multiblock_masks(5, 14, generator=torch_generator(0, "b"))
    assert torch.equal(m.context, again.context) and torch.equal(m.targets, again.targets)


@pytest.mark.parametrize("seed", range(5))
def test_distinct_windows_never_repeat_a_position(seed):
    # the release: 4 windows' rows and columns drawn without replacement from the 8 offsets
    m = local_window_masks(256, 14, 7, 4, 0.8, torch_generator(seed, "w"), draw="distinct")
    top, left = m.index[..., 0] // 14, m.index[..., 0] % 14
    for i in range(256):
        assert len(set(top[i].tolist())) == 4 and len(set(left[i].tolist())) == 4
        assert len(set(zip(top[i].tolist(), left[i].tolist()))) == 4
    assert top.max() <= 7 and left.max() <= 7 and top.min() >= 0
    assert (m.mask.sum(-1) == 39).all()
    # every offset is used: the permutation covers the whole range, not a fixed subset
    assert set(top.flatten().tolist()) == set(range(8)) == set(left.flatten().tolist())


def test_uniform_windows_can_repeat_so_the_draw_matters():
    m = local_window_masks(256, 8, 4, 4, 0.8, torch_generator(0, "w"), draw="uniform")
    top = m.index[..., 0] // 8
    assert any(len(set(top[i].tolist())) < 4 for i in range(256))
    d = local_window_masks(256, 8, 4, 4, 0.8, torch_generator(0, "w"), draw="distinct")
    assert all(len(set((d.index[i, :, 0] // 8).tolist())) == 4 for i in range(256))


def test_distinct_windows_need_enough_offsets():
    with pytest.raises(ConfigError, match="MASK.NUM_WINDOWS"):
        local_window_masks(1, 8, 6, 4, 0.8, draw="distinct")  # 3 offsets for 4 windows
    local_window_masks(1, 8, 6, 4, 0.8, draw="uniform")
    with pytest.raises(ConfigError, match="MASK.WINDOW_DRAW"):
        local_window_masks(1, 8, 4, 4, 0.8, draw="shared")
