"""Held-out sets a pretraining run leaves out (``--exclude-split``), matched by content sha256.

A spec is either

1. the path of a sarfewshot split file (``"format": "sarfewshot-split"``): its ``val`` entries
   are held out, their relative paths resolved against ``--exclude-root``; or
2. ``DATASET:val``: the validation pool of a registered dataset at ``--exclude-root``, drawn
   exactly as the evaluation grid draws it (its split code, on the eval defaults with
   ``DATA.EXCLUDE_EVAL_OPTS`` merged, e.g. ``DATASET.VAL_POOL 0.3`` or
   ``DATASET.VAL_POOL_RULE blocks``: the eval config whose pool is to stay unseen) for each seed
   of ``--exclude-seeds`` (default 1-6: every protocol's default seeds).

The held-out images are hashed (sha256 of the file bytes) and every pretraining image with one
of those hashes is left out, whatever its name or folder: ``eval --eval-split val`` on that pool
then scores images the backbone never saw.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

from sarfewshot.errors import ConfigError
from sarfewshot.utils.intlist import parse_ints

DEFAULT_SEEDS = (1, 2, 3, 4, 5, 6)
_POOL_SPEC = re.compile(r"([A-Za-z0-9_\-]+):val")


def parse_seeds(text: str) -> list[int]:
    """``--exclude-seeds`` (``1,2,3`` or ``1-6``); empty: :data:`DEFAULT_SEEDS`."""
    if not str(text).strip():
        return list(DEFAULT_SEEDS)
    return parse_ints(text, "--exclude-seeds")


def held_out_paths(
    spec: str, root: str, seeds: Sequence[int], eval_opts: Sequence[str] = ()
) -> list[Path]:
    """The image files one ``--exclude-split`` spec names.

    Raises:
        ConfigError: no ``--exclude-root``, or a spec that is neither a file nor ``DATASET:val``.
        SplitError / DatasetError: from reading the split file or listing the dataset.
    """
    if not root:
        raise ConfigError(f"--exclude-split {spec}: pass --exclude-root DIR (DATA.EXCLUDE_ROOT)")
    if Path(spec).expanduser().is_file():
        return _split_file_paths(Path(spec).expanduser(), Path(root).expanduser())
    match = _POOL_SPEC.fullmatch(spec)
    if match is None:
        raise ConfigError(
            f"--exclude-split {spec}: neither a split file nor DATASET:val (e.g. mstar_soc:val)"
        )
    return _pool_paths(match[1], root, seeds, eval_opts)


def _split_file_paths(path: Path, root: Path) -> list[Path]:
    from sarfewshot.data.splits import split_from_dict
    from sarfewshot.errors import SplitError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SplitError(f"--exclude-split {path}: not a readable JSON split file: {exc}") from None
    split = split_from_dict(data, str(path))
    if not split.val:
        raise ConfigError(f"--exclude-split {path}: the split file holds no val entries")
    paths = [root / d.impath for d in split.val]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        # DATASET:val takes the dataset root, a split file the folder its paths start from
        raise ConfigError(
            f"--exclude-split {path}: {len(absent)} of its {len(paths)} val entries are not "
            f"under --exclude-root {root} (e.g. {absent[0]}); a split file's paths are relative "
            "to the dataset's listing root (for mstar_soc the MSTAR_SOC folder, where TRAIN/ "
            "and TEST/ sit)"
        )
    return paths


def _pool_paths(
    dataset: str, root: str, seeds: Sequence[int], eval_opts: Sequence[str] = ()
) -> list[Path]:
    """The union over ``seeds`` of the grid's validation pools of ``dataset`` at ``root``.

    The pools come from :func:`~sarfewshot.data.splits.validation_pool`, the hold-out step the
    grid's split files are drawn with: no fingerprint of the whole dataset and no K-shot split
    files are needed to know which images a pool holds.
    """
    from sarfewshot.data.build import build_listing, split_name
    from sarfewshot.data.splits import validation_pool
    from sarfewshot.engine.config import get_cfg_default, merge_opts
    from sarfewshot.engine.grid.data import val_fraction
    from sarfewshot.engine.grid.resolve import dataset_options_for

    cfg = get_cfg_default()
    merge_opts(cfg, [str(x) for x in eval_opts], source="DATA.EXCLUDE_EVAL_OPTS")
    obj, listing = build_listing(dataset, root, **dataset_options_for(dataset, cfg))
    fraction = val_fraction(cfg, SimpleNamespace(obj=obj))
    rule, name = str(cfg.DATASET.VAL_POOL_RULE), split_name(obj)
    paths: dict[str, None] = {}
    # a blocks pool is the same for every seed (sarfewshot.data.valpool): drawing it once spares
    # re-reading every chip's azimuth (raw MSTAR headers) per seed
    for seed in list(seeds)[:1] if rule == "blocks" else seeds:
        pool = validation_pool(listing, name, fraction, rule, int(seed))
        paths.update((d.impath, None) for d in pool)
    if not paths:
        raise ConfigError(
            f"--exclude-split {dataset}:val: the dataset's validation pool is empty "
            "(DATASET.VAL_POOL is 0)"
        )
    base = Path(listing.root)
    return [base / rel for rel in paths]


def held_out_hashes(
    specs: Sequence[str],
    root: str,
    seeds: str,
    memo_dir: Path | None = None,
    eval_opts: Sequence[str] = (),
) -> set[str]:
    """The content sha256 of every image the specs hold out (empty without specs)."""
    from sarfewshot.data.fingerprint import content_hashes

    if not specs:
        return set()
    picked = parse_seeds(seeds)
    paths: list[Path] = []
    for spec in specs:
        paths += held_out_paths(str(spec), root, picked, eval_opts)
    memo = None if memo_dir is None else memo_dir / "exclude-hash-memo.json"
    if memo is not None:
        memo_dir.mkdir(parents=True, exist_ok=True)
    return set(content_hashes(paths, memo))
