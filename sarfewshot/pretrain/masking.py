"""Masking rules of the pretraining methods, all drawn from a caller-owned ``torch.Generator``.

- Local windows (LoMaR / SAR-JEPA): per image, ``num_windows`` windows of ``w x w`` patches on
  the token grid; inside each window ``int(w * w * ratio)`` patches are masked. Two position
  rules (``MASK.WINDOW_DRAW``): ``distinct``, the release's, draws the windows' top rows and left
  columns each without replacement (a random permutation of the ``grid - w + 1`` offsets, first
  ``num_windows`` taken), so no two windows of an image share a row offset, a column offset or a
  position; ``uniform`` draws each window's row and column independently (windows may repeat).
  Release quirk not reproduced: the release shares window positions across the batch (and pairs
  images with windows so that each image only gets all four windows for an odd per-GPU batch);
  here every image draws its own windows.
- Random masking (MAE): per image, a random ``ratio`` share of the patches is masked.
- Multi-block masks (I-JEPA): several target blocks and one context block; the context excludes
  every target patch.

Generators are created by the caller, so a resumed run draws the same masks. ``generator`` is
one ``torch.Generator`` for the batch, or a sequence of one generator per image: the pretraining
loop passes generators keyed on ``(seed, epoch, sample index)``, so an image's windows and masked
patches do not depend on the batch it lands in, the rank or the world size. I-JEPA's block
shapes are drawn once per batch (from the first image's generator) and its context is cut to
the batch's smallest, so I-JEPA alone stays batch-dependent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import torch

from sarfewshot.errors import ConfigError


@dataclass
class WindowMasks:
    """Local-window masks for a batch.

    Attributes:
        index: (B, nw, w * w) long, token indices (raster order on the grid) of each window's
            patches, in raster order inside the window.
        mask: (B, nw, w * w) bool, True where the patch is masked.
    """

    index: torch.Tensor
    mask: torch.Tensor


Generators = Union[torch.Generator, Sequence[torch.Generator], None]


def _draw(fn, shape: tuple[int, ...], gen: Generators) -> torch.Tensor:
    """``fn(shape, generator, device)``; with one generator per image, each draws its rows.

    Per-image generators (keyed on the image, not the batch) make an image's mask independent
    of which batch, rank or world size it lands in: ``shape[0]`` is then ``len(gen) * rows``.
    """
    if gen is None or isinstance(gen, torch.Generator):
        return fn(shape, gen, gen.device if gen is not None else "cpu")
    rows = shape[0] // len(gen)
    return torch.cat([fn((rows, *shape[1:]), g, g.device) for g in gen])


def _rand(shape: tuple[int, ...], gen: Generators) -> torch.Tensor:
    # Draws happen on the generator's device and are moved by the caller if needed.
    return _draw(lambda s, g, d: torch.rand(s, generator=g, device=d), shape, gen)


def _randint(high: int, shape: tuple[int, ...], gen: Generators) -> torch.Tensor:
    return _draw(lambda s, g, d: torch.randint(0, high, s, generator=g, device=d), shape, gen)


def num_masked(count: int, ratio: float) -> int:
    """``int(count * ratio)`` (the release's rounding: 49 * 0.8 -> 39)."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"mask ratio must be in [0, 1); got {ratio} (MASK.RATIO)")
    return int(count * ratio)


def random_subset_mask(rows: int, count: int, n_masked: int, gen: Generators) -> torch.Tensor:
    """(rows, count) bool: exactly ``n_masked`` True per row, positions uniformly random."""
    order = _rand((rows, count), gen).argsort(dim=1)
    return order < n_masked


WINDOW_DRAWS = ("distinct", "uniform")


def check_windows(grid: int, window: int, num_windows: int, draw: str) -> None:
    """Raise ConfigError (naming the MASK key) when the windows cannot be drawn on ``grid``."""
    if not 1 <= window <= grid:
        raise ConfigError(f"mask window {window} must be in [1, grid {grid}] (MASK.WINDOW)")
    if num_windows < 1:
        raise ConfigError(f"MASK.NUM_WINDOWS must be >= 1; got {num_windows}")
    if draw not in WINDOW_DRAWS:
        raise ConfigError(f"MASK.WINDOW_DRAW must be distinct or uniform; got {draw!r}")
    span = grid - window + 1
    if draw == "distinct" and num_windows > span:
        raise ConfigError(
            f"MASK.NUM_WINDOWS {num_windows} distinct windows need {num_windows} offsets; a "
            f"{window}-patch window has {span} on a {grid}-patch grid (lower MASK.NUM_WINDOWS or "
            "MASK.WINDOW, or set MASK.WINDOW_DRAW uniform)"
        )


def _window_offsets(
    batch: int, span: int, num_windows: int, draw: str, gen: Generators
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, nw) top rows and left columns of the windows, each in ``[0, span)``."""
    if draw == "uniform":
        return _randint(span, (batch, num_windows), gen), _randint(span, (batch, num_windows), gen)
    # one random permutation of the offsets per image and axis (argsort of uniform noise)
    top = _rand((batch, span), gen).argsort(dim=1)[:, :num_windows]
    left = _rand((batch, span), gen).argsort(dim=1)[:, :num_windows]
    return top, left


def local_window_masks(
    batch: int,
    grid: int,
    window: int = 7,
    num_windows: int = 4,
    ratio: float = 0.8,
    generator: Generators = None,
    draw: str = "uniform",
) -> WindowMasks:
    """Draw per-image local windows and their masked patches.

    Args:
        batch: number of images.
        grid: side of the square token grid (14 for 224 px with patch 16).
        window: window side in patches (7 in the release).
        num_windows: windows per image (4 in the release).
        ratio: masked share of each window (0.8 -> 39 of 49).
        generator: the caller's generator.
        draw: ``distinct`` (the release: row and column offsets without replacement) or
            ``uniform`` (each offset drawn independently); see the module docstring.
    """
    check_windows(grid, window, num_windows, draw)
    top, left = _window_offsets(batch, grid - window + 1, num_windows, draw, generator)
    offs = torch.arange(window, device=top.device)
    rows = (top[..., None] + offs)[..., :, None]  # (B, nw, w, 1)
    cols = (left[..., None] + offs)[..., None, :]  # (B, nw, 1, w)
    index = (rows * grid + cols).reshape(batch, num_windows, window * window)
    k = num_masked(window * window, ratio)
    mask = random_subset_mask(batch * num_windows, window * window, k, generator)
    return WindowMasks(index=index, mask=mask.reshape(batch, num_windows, window * window))


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick tokens by index: tokens (B, N, D), index (B, ...) -> (B, ..., D)."""
    b, _, d = tokens.shape
    flat = index.reshape(b, -1)
    out = torch.gather(tokens, 1, flat[..., None].expand(-1, -1, d))
    return out.reshape(*index.shape, d)


@dataclass
class RandomMasks:
    """MAE masks: ``keep`` (B, n_keep) indices of visible patches (sorted), ``mask`` (B, N) bool."""

    keep: torch.Tensor
    mask: torch.Tensor


def random_masks(
    batch: int, num_patches: int, ratio: float = 0.75, generator: Generators = None
) -> RandomMasks:
    """Mask a random ``int(N * ratio)`` patches per image (MAE's rule)."""
    n_mask = num_masked(num_patches, ratio)
    if n_mask == num_patches:
        raise ConfigError(f"mask ratio {ratio} leaves no visible patch of {num_patches}")
    mask = random_subset_mask(batch, num_patches, n_mask, generator)
    # visible indices, ascending, so the encoder sees them in raster order
    keep = torch.nonzero(~mask, as_tuple=False)[:, 1].reshape(batch, num_patches - n_mask)
    return RandomMasks(keep=keep, mask=mask)


@dataclass
class BlockMasks:
    """I-JEPA masks.

    Attributes:
        context: (B, n_ctx) long, visible patch indices (ascending).
        targets: (B, n_blocks, n_tgt) long, patch indices of each target block (raster order).
    """

    context: torch.Tensor
    targets: torch.Tensor


def _block_shape(
    grid: int,
    scale: tuple[float, float],
    aspect: tuple[float, float],
    gen: Generators,
) -> tuple[int, int]:
    """Block (height, width) with area share in ``scale`` and aspect ratio in ``aspect``."""
    u = _rand((2,), gen).tolist()
    area = grid * grid * (scale[0] + u[0] * (scale[1] - scale[0]))
    log_a = math.log(aspect[0]) + u[1] * (math.log(aspect[1]) - math.log(aspect[0]))
    ar = math.exp(log_a)
    h = int(round(math.sqrt(area * ar)))
    w = int(round(math.sqrt(area / ar)))
    return min(max(h, 1), grid), min(max(w, 1), grid)


def _block_index(top: int, left: int, h: int, w: int, grid: int) -> torch.Tensor:
    rows = torch.arange(top, top + h)[:, None]
    cols = torch.arange(left, left + w)[None, :]
    return (rows * grid + cols).reshape(-1)


def multiblock_masks(
    batch: int,
    grid: int,
    num_targets: int = 4,
    target_scale: tuple[float, float] = (0.15, 0.2),
    target_aspect: tuple[float, float] = (0.75, 1.5),
    context_scale: tuple[float, float] = (0.85, 1.0),
    generator: Generators = None,
) -> BlockMasks:
    """I-JEPA multi-block masks.

    Block shapes are drawn once per batch (so target blocks have one length); positions per image.
    The context block (aspect 1) minus every target block is the visible set; all images keep the
    smallest context count in the batch (the first indices in raster order), at least one patch.
    """
    per_image = generator is not None and not isinstance(generator, torch.Generator)
    first = generator[0] if per_image else generator  # type: ignore[index]
    th, tw = _block_shape(grid, target_scale, target_aspect, first)
    ch, cw = _block_shape(grid, context_scale, (1.0, 1.0), first)
    targets, contexts = [], []
    for i in range(batch):
        gen_i = generator[i] if per_image else generator  # type: ignore[index]
        pos = _rand((num_targets + 1, 2), gen_i).tolist()
        covered = torch.zeros(grid * grid, dtype=torch.bool)
        blocks = []
        for t in range(num_targets):
            top, left = int(pos[t][0] * (grid - th + 1)), int(pos[t][1] * (grid - tw + 1))
            idx = _block_index(top, left, th, tw, grid)
            covered[idx] = True
            blocks.append(idx)
        top, left = int(pos[-1][0] * (grid - ch + 1)), int(pos[-1][1] * (grid - cw + 1))
        ctx = torch.zeros(grid * grid, dtype=torch.bool)
        ctx[_block_index(top, left, ch, cw, grid)] = True
        ctx &= ~covered
        targets.append(torch.stack(blocks))
        contexts.append(torch.nonzero(ctx).flatten())
    n_ctx = max(1, min(len(c) for c in contexts))
    context = torch.stack([_pad_context(c, n_ctx, grid) for c in contexts])
    return BlockMasks(context=context, targets=torch.stack(targets))


def _pad_context(ctx: torch.Tensor, n: int, grid: int) -> torch.Tensor:
    # A context emptied by its targets (tiny grids) falls back to the first patch.
    if len(ctx) == 0:
        return torch.zeros(n, dtype=torch.long)
    return ctx[:n]
