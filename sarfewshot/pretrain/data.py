"""Unlabelled SAR images for pretraining: discovery, scaling to [0, 1], the release's augmentation,
and a resumable, distributed epoch sampler.

Scaling (spec section 1: no mean/std normalisation): amplitude / nominal maximum of the storage
format (8-bit / 255 as the release's ToTensor, 16-bit / 65535 so 16-bit files keep their precision);
float data (float TIFF, raw MSTAR) has no nominal scale and is divided by its own
``FLOAT_PERCENTILE`` (99.9th) percentile, then clipped to [0, 1].

Augmentation (release recipe): RandomResizedCrop(size, scale=(0.2, 1), ratio=(3/4, 4/3), bicubic),
horizontal flip (p = 0.5), contrast jitter 0.5 (factor uniform in [0.5, 1.5], blended with the
image mean as torchvision does for one channel), values clipped to [0, 1]. Every draw comes from a
generator seeded by ``(seed, epoch, index)``, so an image's augmentation does not depend on the
number of workers or processes, nor on where a resumed run restarts.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from sarfewshot.errors import DatasetError
from sarfewshot.utils.seeding import derive_seed, torch_generator

logger = logging.getLogger(__name__)


def find_unlabelled_images(roots: Sequence[str | Path]) -> list[Path]:
    """Every image file under ``roots`` (recursive, any supported format), sorted per root.

    Raises:
        DatasetError: naming a root that is missing, or when no image is found at all.
    """
    from sarfewshot.data.io import find_images

    if not roots:
        raise DatasetError("no pretraining data given: pass --data DIR [DIR ...] (DATA.ROOTS)")
    files: list[Path] = []
    for root in roots:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DatasetError(f"pretraining data folder not found: {path} (--data)")
        files.extend(sorted(find_images(path, recursive=True)))
    if not files:
        raise DatasetError(f"no readable image files under {', '.join(map(str, roots))} (--data)")
    return files


def to_unit_range(
    amplitude: np.ndarray, nominal_max: float | None, percentile: float
) -> np.ndarray:
    """Scale amplitude to [0, 1]: by the nominal maximum, else by the image's percentile."""
    a = np.asarray(amplitude, dtype=np.float32)
    if nominal_max:
        scale = float(nominal_max)
    else:
        finite = a[np.isfinite(a)]
        scale = float(np.percentile(np.abs(finite), percentile)) if finite.size else 0.0
    if not math.isfinite(scale) or scale <= 0.0:
        return np.zeros_like(a)
    return np.clip(np.nan_to_num(a / scale, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def load_unit_image(path: str | Path, percentile: float = 99.9) -> torch.Tensor:
    """Read one SAR image as a float32 tensor (1, H, W) in [0, 1]."""
    from sarfewshot.data.io import read_sar

    img = read_sar(path)
    arr = to_unit_range(img.amplitude, img.nominal_max, percentile)
    return torch.from_numpy(np.ascontiguousarray(arr))[None]


@dataclass(frozen=True)
class AugmentSpec:
    """The release's pretraining augmentation parameters."""

    size: int = 224
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    hflip: float = 0.5
    contrast: float = 0.5


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def crop_box(h: int, w: int, spec: AugmentSpec, gen: torch.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, height, width): 10 tries at a random area share and
    log-uniform aspect ratio, then the whole image clipped to the ratio range (the centre crop
    fallback of torchvision)."""
    area = h * w
    log_lo, log_hi = math.log(spec.ratio[0]), math.log(spec.ratio[1])
    for _ in range(10):
        target = area * _uniform(gen, *spec.scale)
        ar = math.exp(_uniform(gen, log_lo, log_hi))
        cw = int(round(math.sqrt(target * ar)))
        ch = int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (), generator=gen))
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < spec.ratio[0]:
        cw, ch = w, int(round(w / spec.ratio[0]))
    elif in_ratio > spec.ratio[1]:
        ch, cw = h, int(round(h * spec.ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def augment(img: torch.Tensor, spec: AugmentSpec, gen: torch.Generator) -> torch.Tensor:
    """Apply the pretraining augmentation to a (1, H, W) image in [0, 1] -> (1, size, size)."""
    top, left, ch, cw = crop_box(img.shape[-2], img.shape[-1], spec, gen)
    crop = img[:, top : top + ch, left : left + cw][None]
    # antialias=True matches PIL's bicubic when shrinking
    out = F.interpolate(
        crop, size=(spec.size, spec.size), mode="bicubic", align_corners=False, antialias=True
    )[0]
    out = out.clamp_(0.0, 1.0)
    if float(torch.rand((), generator=gen)) < spec.hflip:
        out = out.flip(-1)
    if spec.contrast > 0:
        factor = _uniform(gen, max(0.0, 1.0 - spec.contrast), 1.0 + spec.contrast)
        out = (factor * out + (1.0 - factor) * out.mean()).clamp_(0.0, 1.0)
    return out


class UnlabelledImages(Dataset):
    """Images under folders, augmented; items are addressed by ``(index, epoch)`` pairs.

    ``dataset[(i, epoch)]`` returns image ``i`` augmented with the generator
    ``(seed, "pretrain-augment", epoch, i)``; use :class:`EpochSampler` to produce the pairs.
    """

    def __init__(
        self, files: Sequence[Path], spec: AugmentSpec, seed: int, percentile: float = 99.9
    ) -> None:
        self.files = [Path(f) for f in files]
        self.spec = spec
        self.seed = int(seed)
        self.percentile = float(percentile)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        index, epoch = int(item[0]), int(item[1])
        gen = torch_generator(self.seed, "pretrain-augment", epoch, index)
        return augment(self._read(index), self.spec, gen)

    def _read(self, index: int) -> torch.Tensor:
        """Image ``index``; an undecodable file is replaced by the next readable one (a warning
        names it), so one corrupt file in a large folder does not stop a long run."""
        from sarfewshot.errors import ImageReadError

        for k in range(len(self.files)):
            path = self.files[(index + k) % len(self.files)]
            try:
                return load_unit_image(path, self.percentile)
            except ImageReadError as exc:
                logger.warning("skipping unreadable pretraining image: %s", exc)
        raise DatasetError("none of the pretraining images can be read (--data)")


class ShardImages(UnlabelledImages):
    """:class:`UnlabelledImages` read from a packed shard folder (``sarfewshot data pack``).

    Sample ``k`` of the shards is file ``k`` of the folder listing they were packed from, and
    the augmentation is keyed the same way, so ``dataset[(k, epoch)]`` equals the folder
    dataset's item.
    """

    def __init__(
        self,
        folder: str | Path,
        spec: AugmentSpec,
        seed: int,
        percentile: float = 99.9,
        keep: Sequence[int] | None = None,
    ) -> None:
        from sarfewshot.data.shards import ShardReader

        super().__init__([], spec, seed, percentile)
        self.folder = Path(folder)
        self.reader = ShardReader(folder)
        # the samples trained on (--exclude-split leaves some out); None: every sample
        self.keep = None if keep is None or len(keep) == len(self.reader) else list(keep)

    def __len__(self) -> int:
        return len(self.reader) if self.keep is None else len(self.keep)

    def _read(self, index: int) -> torch.Tensor:
        sample = index if self.keep is None else self.keep[index]
        amplitude, nominal = self.reader.read(sample)
        arr = to_unit_range(amplitude, nominal, self.percentile)
        return torch.from_numpy(np.ascontiguousarray(arr))[None]


def build_unlabelled(
    roots: Sequence[str | Path], spec: AugmentSpec, seed: int, percentile: float = 99.9
) -> UnlabelledImages:
    """Images under folders, or one packed shard folder (a folder holding ``index.json``).

    Raises:
        DatasetError: naming ``--data`` when a shard folder is mixed with other folders.
    """
    folder = shard_root(roots)
    if folder is None:
        return UnlabelledImages(find_unlabelled_images(roots), spec, seed, percentile)
    return ShardImages(folder, spec, seed, percentile)


def shard_root(roots: Sequence[str | Path]) -> Path | None:
    """The packed shard folder ``roots`` consist of, or None for folders of images.

    Raises:
        DatasetError: naming ``--data`` when a shard folder is mixed with other folders.
    """
    from sarfewshot.data.shards import is_shard_folder

    shard_roots = [r for r in roots if is_shard_folder(Path(r).expanduser())]
    if not shard_roots:
        return None
    if len(roots) > 1:
        raise DatasetError(
            f"--data: {shard_roots[0]} is a packed shard folder; pass it alone (pack several "
            "folders into one shard set with sarfewshot data pack --data DIR DIR ...)"
        )
    return Path(shard_roots[0]).expanduser()


class EpochSampler(Sampler):
    """A seeded, resumable, distributed sampler yielding ``(index, epoch)`` pairs.

    Each epoch is a permutation drawn from ``(seed, "pretrain-sampler", epoch)``, padded by
    wrapping to a multiple of ``num_replicas`` (as DistributedSampler does), and rank ``r`` takes
    positions ``r, r + R, ...``. ``set_epoch(e, start)`` skips the first ``start`` items of this
    rank's share, which is how a resumed run continues mid-epoch.
    """

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        if size < 1:
            raise DatasetError("the pretraining sampler needs at least one image")
        self.size = size
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.start = 0
        self.per_rank = math.ceil(size / num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and the first position to yield."""
        self.epoch = int(epoch)
        self.start = int(start)

    def indices(self) -> list[int]:
        """This rank's full index list for the current epoch."""
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "pretrain-sampler", self.epoch))
        order = torch.randperm(self.size, generator=gen).tolist()
        total = self.per_rank * self.num_replicas
        order = (order * math.ceil(total / self.size))[:total]
        return order[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.indices()[self.start :]:
            yield index, self.epoch

    def __len__(self) -> int:
        return self.per_rank - self.start
