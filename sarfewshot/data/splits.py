"""Few-shot splits: seeded, nested across K, saved as portable JSON and reused.

Drawing rule (:func:`make_split`), per class in label order:

1. Validation pool: ``floor(val_fraction * n + 0.5)`` images of the class's train images (at most
   ``n - 1``) are held out, chosen by a permutation from ``numpy_rng(seed, dataset, "val")``
   (``DATASET.VAL_POOL_RULE random``, the default), or as contiguous blocks of azimuth or file
   order that do not depend on the seed (``blocks``, :mod:`sarfewshot.data.valpool`).
2. K-shot draw: a permutation of the remaining pool from ``numpy_rng(seed, dataset, "train")``;
   the first K items are the support set. The permutation does not depend on K, so for one seed
   the 1-shot set is inside the 5-shot set, which is inside the 10-shot set.
3. A class with fewer than K images is a :class:`~sarfewshot.errors.SplitError` naming the
   dataset, the class and its pool size, because the cell would silently train on fewer than K
   images of it. Two explicit opt-ins proceed (with a warning): ``allow_short``
   (``DATASET.ALLOW_SHORT_CLASSES``) gives all of the class's images, and the split's
   :meth:`FewShotSplit.support_counts` (copied into the record) carries the real per-class
   counts; ``repeat`` (``DATASET.REPEAT``) draws the missing ``K - n`` with replacement from a
   separate generator ``numpy_rng(seed, dataset, "repeat", label)``, so other classes' draws
   (and the nesting) are unaffected. A reused split file is checked the same way.

A split file stores paths relative to the dataset root, labels, class names, the seed, K and the
sha256 of the listing it was drawn from; loading it against a folder whose listing changed is a
:class:`~sarfewshot.errors.SplitError`. Nothing here pickles.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Union

from sarfewshot.data.base import Datum, Listing
from sarfewshot.errors import SplitError
from sarfewshot.utils.io import atomic_write_json, sha256_text
from sarfewshot.utils.seeding import numpy_rng

PathLike = Union[str, "os.PathLike[str]"]
SPLIT_FORMAT = "sarfewshot-split"
BUNDLE_FORMAT = "sarfewshot-split-bundle"
POOL_FORMAT = "sarfewshot-pool-split"
SPLIT_VERSION = 1
POOL_FILE = "pool_split.json"


@dataclass
class FewShotSplit:
    """A drawn few-shot split; ``Datum.impath`` values are relative to the listing root.

    ``shots`` is -1 when the split is the whole train pool (``NUM_SHOTS <= 0``).
    """

    dataset: str
    seed: int
    shots: int
    listing_sha256: str
    classnames: list[str]
    train: list[Datum]
    val: list[Datum]
    test: list[Datum]
    repeat: bool = False
    val_fraction: float = 0.0
    val_rule: str = "random"

    def to_dict(self) -> dict:
        """The JSON-ready form (entries are ``[relpath, label, classname]`` as in CoOp).

        ``val_rule`` is written only when it is not ``random``, so files (and their hashes) of
        the default rule are those written before the rule existed.
        """
        rule = {} if self.val_rule == "random" else {"val_rule": self.val_rule}
        return {
            "format": SPLIT_FORMAT,
            "version": SPLIT_VERSION,
            "dataset": self.dataset,
            "seed": self.seed,
            "shots": self.shots,
            "repeat": self.repeat,
            "val_fraction": self.val_fraction,
            **rule,
            "listing_sha256": self.listing_sha256,
            "classnames": list(self.classnames),
            "train": _entries(self.train),
            "val": _entries(self.val),
            "test": _entries(self.test),
        }

    def support_counts(self) -> dict[str, int]:
        """Distinct support (train) images per class, every class listed (0 when it has none)."""
        paths: dict[int, set[str]] = {i: set() for i in range(len(self.classnames))}
        for d in self.train:
            paths.setdefault(d.label, set()).add(d.impath)
        return {self.classnames[i]: len(p) for i, p in sorted(paths.items())}

    def short_classes(self) -> dict[str, int]:
        """Classes with fewer than K distinct support images (none when ``shots`` is -1)."""
        if self.shots <= 0:
            return {}
        return {c: n for c, n in self.support_counts().items() if n < self.shots}

    def sha256(self) -> str:
        """A hash of the split's canonical JSON (independent of formatting and key order)."""
        return sha256_text(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")))


def _entries(items: list[Datum]) -> list[list]:
    return [[d.impath, d.label, d.classname] for d in items]


# ----------------------------------------------------------------------------------- drawing


def _hold_out(items: list[Datum], val_fraction: float, rng) -> tuple[list[Datum], list[Datum]]:
    """Split one class's train images into (validation pool, K-shot pool), both in listing order."""
    n = len(items)
    n_val = min(int(val_fraction * n + 0.5), max(n - 1, 0))
    held = set(rng.permutation(n)[:n_val].tolist())
    return (
        [d for i, d in enumerate(items) if i in held],
        [d for i, d in enumerate(items) if i not in held],
    )


def _draw(pool: list[Datum], shots: int, rng, repeat: bool, extra_keys: tuple) -> list[Datum]:
    """K items of one class's pool (see the module docstring for the rule)."""
    perm = rng.permutation(len(pool))  # drawn for every K, which keeps the draws nested
    if shots <= 0:
        return list(pool)
    chosen = [pool[i] for i in perm[:shots]]
    if repeat and 0 < len(pool) < shots:
        extra = numpy_rng(*extra_keys).integers(0, len(pool), size=shots - len(pool))
        chosen += [pool[i] for i in extra]
    return chosen


def _warn_small(dataset: str, cname: str, n: int, shots: int, repeat: bool) -> None:
    action = (
        "drawing the rest with replacement (DATASET.REPEAT)"
        if repeat and n
        else "using all of them (DATASET.ALLOW_SHORT_CLASSES)"
    )
    warnings.warn(
        f"{dataset}: class {cname!r} has only {n} images in its train pool, fewer than "
        f"K={shots}; {action}",
        UserWarning,
        stacklevel=3,
    )


def _short_error(dataset: str, shots: int, short: dict[str, int], where: str = "") -> SplitError:
    """The refusal of a K larger than some classes' pools (``short``: class -> pool size)."""
    listed = ", ".join(f"{c!r} has {n}" for c, n in short.items())
    return SplitError(
        f"{dataset}{where}: K={shots} is larger than the train pool of {len(short)} class(es) "
        f"({listed} images after the validation hold-out), so those classes would get fewer "
        f"than K support images; choose a smaller K, or set DATASET.ALLOW_SHORT_CLASSES True to "
        f"use all of their images (the record's split.support_counts keeps the real counts and "
        f"the table marks the cell), or DATASET.REPEAT True to draw with replacement"
    )


def _check_draw_args(seed: int, val_fraction: float) -> None:
    if int(seed) < 0:
        raise SplitError(f"split seed must be >= 0 (seed 0 is a real seed), got {seed}")
    if not 0.0 <= val_fraction < 1.0:
        raise SplitError(f"DATASET.VAL_POOL must be in [0, 1), got {val_fraction}")


def _held_pools(
    listing: Listing, dataset: str, seed: int, val_fraction: float, val_rule: str
) -> list[tuple[list[Datum], list[Datum]]]:
    """Per class (label order): its (validation pool, K-shot pool) under ``val_rule``."""
    from sarfewshot.data.valpool import block_hold_out, check_rule

    check_rule(val_rule)
    by_class: list[list[Datum]] = [[] for _ in listing.classnames]
    for d in listing.train:
        by_class[d.label].append(d)
    if val_rule == "blocks":
        return [block_hold_out(listing, items, val_fraction, dataset) for items in by_class]
    rng_val = numpy_rng(seed, dataset, "val")
    return [_hold_out(items, val_fraction, rng_val) for items in by_class]


def validation_pool(
    listing: Listing, dataset: str, val_fraction: float, val_rule: str = "random", seed: int = 0
) -> list[Datum]:
    """The validation pool a split of ``listing`` holds out (under ``blocks``: for every seed).

    Args:
        dataset: the split name (it keys the generators).
        val_fraction: ``DATASET.VAL_POOL``.
        val_rule: ``DATASET.VAL_POOL_RULE``.
        seed: the split seed (``random`` only; ``blocks`` ignores it).
    """
    _check_draw_args(seed, val_fraction)
    return [
        d for held, _ in _held_pools(listing, dataset, seed, val_fraction, val_rule) for d in held
    ]


def make_split(
    listing: Listing,
    dataset: str,
    seed: int,
    shots: int,
    val_fraction: float,
    repeat: bool = False,
    allow_short: bool = False,
    val_rule: str = "random",
) -> FewShotSplit:
    """Draw a K-shot split from ``listing`` (``shots <= 0``: the whole train pool).

    ``val_rule``: ``DATASET.VAL_POOL_RULE``, ``random`` or ``blocks``.

    Raises:
        SplitError: a negative seed, a bad ``val_fraction``, K larger than every class's pool
            (without ``repeat``), or K larger than some class's pool (without ``repeat`` or
            ``allow_short``).
    """
    _check_draw_args(seed, val_fraction)
    shots = int(shots) if shots > 0 else -1
    held_pool = _held_pools(listing, dataset, seed, val_fraction, val_rule)
    sizes = [len(pool) for _, pool in held_pool]
    if shots > 0 and not repeat and sizes and max(sizes) < shots:
        raise SplitError(
            f"{dataset}: K={shots} is larger than every class's train pool (largest "
            f"{max(sizes)} images after holding out {val_fraction:g} for validation); "
            f"choose a smaller K or set DATASET.REPEAT True"
        )
    short = {listing.classnames[i]: n for i, n in enumerate(sizes) if shots > 0 and n < shots}
    if short and not (repeat or allow_short):
        raise _short_error(dataset, shots, short)
    rng_train = numpy_rng(seed, dataset, "train")
    train: list[Datum] = []
    for label, (_, pool) in enumerate(held_pool):
        if shots > 0 and len(pool) < shots:
            _warn_small(dataset, listing.classnames[label], len(pool), shots, repeat)
        train += _draw(pool, shots, rng_train, repeat, (seed, dataset, "repeat", label))
    return FewShotSplit(
        dataset=dataset,
        seed=int(seed),
        shots=shots,
        listing_sha256=listing.sha256(),
        classnames=list(listing.classnames),
        train=train,
        val=[d for held, _ in held_pool for d in held],
        test=list(listing.test),
        repeat=bool(repeat),
        val_fraction=float(val_fraction),
        val_rule=val_rule,
    )


# ------------------------------------------------------------------------------ reading JSON


def _read_json(path: PathLike, what: str = "split file") -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SplitError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SplitError(f"{what} {path} is not valid JSON: {exc}") from None


def _is_entry(entry: Any, lengths: tuple = (2, 3)) -> bool:
    """True for ``[str path, int label(, class name)]``."""
    return (
        isinstance(entry, list)
        and len(entry) in lengths
        and isinstance(entry[0], str)
        and isinstance(entry[1], int)
        and not isinstance(entry[1], bool)
    )


def _parse_entries(raw: Any, key: str, classnames: list[str], where: str) -> list[Datum]:
    if not isinstance(raw, list):
        raise SplitError(f"split file {where}: {key!r} must be a list of [path, label, class]")
    out = []
    for i, entry in enumerate(raw):
        if not _is_entry(entry) or not 0 <= entry[1] < len(classnames):
            raise SplitError(
                f"split file {where}: {key}[{i}] = {entry!r} is not "
                f"[relative path, label, class name]"
            )
        out.append(Datum(impath=entry[0], label=entry[1], classname=classnames[entry[1]]))
    return out


_FIELDS = {
    "dataset": str,
    "seed": int,
    "shots": int,
    "repeat": bool,
    "val_fraction": (int, float),
    "listing_sha256": str,
    "classnames": list,
}


def split_from_dict(data: Any, where: str) -> FewShotSplit:
    """Validate a split file's parsed JSON (``where`` names it in errors) and build the split."""
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise SplitError(f'{where} is not a sarfewshot split file (no "format": "{SPLIT_FORMAT}")')
    if data.get("version") != SPLIT_VERSION:
        raise SplitError(
            f"split file {where} has version {data.get('version')!r}; this "
            f"sarfewshot reads version {SPLIT_VERSION}"
        )
    for key, kind in _FIELDS.items():
        if not isinstance(data.get(key), kind):
            raise SplitError(f"split file {where}: field {key!r} is missing or malformed")
    classnames = [str(c) for c in data["classnames"]]
    rule = data.get("val_rule", "random")
    if rule not in ("random", "blocks"):
        raise SplitError(f"split file {where}: field 'val_rule' is {rule!r}, not random or blocks")
    return FewShotSplit(
        dataset=data["dataset"],
        seed=data["seed"],
        shots=data["shots"],
        listing_sha256=data["listing_sha256"],
        classnames=classnames,
        train=_parse_entries(data.get("train"), "train", classnames, where),
        val=_parse_entries(data.get("val"), "val", classnames, where),
        test=_parse_entries(data.get("test"), "test", classnames, where),
        repeat=data["repeat"],
        val_fraction=float(data["val_fraction"]),
        val_rule=rule,
    )


# ------------------------------------------------------------------------------ split files


def split_path(
    split_dir: PathLike, dataset: str, shots: int, seed: int, repeat: bool = False
) -> Path:
    """``<split_dir>/<dataset>/shot_<K>-seed_<S>.json`` (``shot_all`` for the whole pool)."""
    k = str(int(shots)) if shots > 0 else "all"
    suffix = "-repeat" if repeat and shots > 0 else ""
    return Path(split_dir) / dataset / f"shot_{k}-seed_{int(seed)}{suffix}.json"


def save_split(split: FewShotSplit, path: PathLike) -> None:
    """Write ``split`` as portable JSON (atomically)."""
    atomic_write_json(path, split.to_dict())


def load_split(path: PathLike, listing: Listing) -> FewShotSplit:
    """Read a split file and check it was drawn from ``listing`` (same sha256).

    Raises:
        SplitError: the file is unreadable or malformed, or the dataset folder changed since
            the split was drawn (both hashes in the message).
    """
    split = split_from_dict(_read_json(path), str(path))
    current = listing.sha256()
    if split.listing_sha256 != current:
        raise SplitError(
            f"split file {path} no longer matches the dataset folder {listing.root}: the folder "
            f"changed since the split was drawn (split drawn from listing sha256 "
            f"{split.listing_sha256}, folder now lists {current}); restore the folder, or "
            f"delete the split file to draw a new split"
        )
    return split


def _listing_of(path: Path) -> str | None:
    """The listing sha256 a split file was drawn from (None when the file is unreadable)."""
    try:
        return split_from_dict(_read_json(path), str(path)).listing_sha256
    except SplitError:
        return None


def _check_same_draw(split: FewShotSplit, path: Path, val_fraction: float, val_rule: str) -> None:
    if abs(split.val_fraction - float(val_fraction)) > 1e-9:
        raise SplitError(
            f"split file {path} was drawn with a validation pool of {split.val_fraction:g}, "
            f"not the requested {val_fraction:g} (DATASET.VAL_POOL); use another split "
            f"directory or delete the file"
        )
    if split.val_rule != val_rule:
        raise SplitError(
            f"split file {path} was drawn with DATASET.VAL_POOL_RULE {split.val_rule}, not the "
            f"requested {val_rule}; use another split directory or delete the file"
        )


def save_pool_split(split_dir: PathLike, dataset: str, listing: Listing) -> Path:
    """Write a dataset's automatic train/test split (``listing.extra["pool_split"]``) for users.

    The split is derived from the listing (so it needs no file to be reproduced); the file
    ``<split_dir>/<dataset>/pool_split.json`` only lets users inspect it.
    """
    path = Path(split_dir) / dataset / POOL_FILE
    record = {
        "format": POOL_FORMAT,
        "version": SPLIT_VERSION,
        "dataset": dataset,
        "listing_sha256": listing.sha256(),
        "classnames": list(listing.classnames),
        **listing.extra.get("pool_split", {}),
        "train": _entries(listing.train),
        "test": _entries(listing.test),
    }
    if not path.is_file() or _read_json(path, "pool split file") != record:
        atomic_write_json(path, record)
    return path


def load_or_make_split(
    split_dir: PathLike,
    listing: Listing,
    dataset: str,
    seed: int,
    shots: int,
    val_fraction: float,
    repeat: bool = False,
    allow_short: bool = False,
    on_stale: Callable[[Path], None] | None = None,
    val_rule: str = "random",
) -> FewShotSplit:
    """Reuse the split file of (dataset, K, seed) when present, else draw and save it.

    A reused file with fewer than K images in some class is refused as a new draw would be
    (see :func:`make_split`), unless ``repeat`` or ``allow_short``. A file drawn from another
    listing of the folder is an error (:func:`load_split`), unless ``on_stale`` is given: the
    split is then drawn again and replaces the file, and ``on_stale(path)`` is told.
    """
    path = split_path(split_dir, dataset, shots, seed, repeat)
    if path.is_file() and on_stale is not None and _listing_of(path) != listing.sha256():
        on_stale(path)
        path.unlink()
    if path.is_file():
        split = load_split(path, listing)
        _check_same_draw(split, path, val_fraction, val_rule)
        short = split.short_classes()
        if short and not (split.repeat or allow_short):
            raise _short_error(dataset, split.shots, short, where=f" (split file {path})")
        return split
    split = make_split(listing, dataset, seed, shots, val_fraction, repeat, allow_short, val_rule)
    save_split(split, path)
    if "pool_split" in listing.extra:
        save_pool_split(split_dir, dataset, listing)
    return split


# --------------------------------------------------------------------- sharing between labs


def export_splits(split_dir: PathLike, out_file: PathLike) -> int:
    """Bundle every split file under ``split_dir`` into one JSON file; returns how many.

    Raises:
        SplitError: there is no split file under ``split_dir``.
    """
    split_dir = Path(split_dir)
    splits = {}
    for path in sorted(split_dir.rglob("*.json")):
        data = _read_json(path)
        if isinstance(data, dict) and data.get("format") == SPLIT_FORMAT:
            split_from_dict(data, str(path))  # refuse to spread a malformed file
            splits[path.relative_to(split_dir).as_posix()] = data
    if not splits:
        raise SplitError(f"no sarfewshot split files under {split_dir}")
    atomic_write_json(
        out_file, {"format": BUNDLE_FORMAT, "version": SPLIT_VERSION, "splits": splits}
    )
    return len(splits)


def _safe_relpath(rel: str, where: str) -> PurePosixPath:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or p.suffix != ".json" or "\\" in rel:
        raise SplitError(
            f"split bundle {where}: refusing the entry name {rel!r} (must be a "
            f"relative .json path inside the split directory)"
        )
    return p


def import_splits(in_file: PathLike, split_dir: PathLike, overwrite: bool = False) -> list[Path]:
    """Write the split files of a bundle (from :func:`export_splits`) under ``split_dir``.

    An existing file with different content is an error unless ``overwrite``.

    Returns:
        The paths written or already identical.
    """
    bundle = _read_json(in_file, "split bundle")
    if (
        not isinstance(bundle, dict)
        or bundle.get("format") != BUNDLE_FORMAT
        or not isinstance(bundle.get("splits"), dict)
    ):
        raise SplitError(f"{in_file} is not a sarfewshot split bundle")
    checked = []
    for rel, data in bundle["splits"].items():
        dest = Path(split_dir).joinpath(*_safe_relpath(rel, str(in_file)).parts)
        split_from_dict(data, f"{in_file}:{rel}")
        if dest.is_file() and not overwrite and _read_json(dest) != data:
            raise SplitError(f"{dest} exists with a different split; pass overwrite to replace")
        checked.append((dest, data))
    for dest, data in checked:
        atomic_write_json(dest, data)
    return [dest for dest, _ in checked]


def read_coop_split(path: PathLike, root: PathLike) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Read a CoOp split file ``{"train": [[relpath, label, classname], ...], "val", "test"}``.

    Returns:
        ``(train, val, test)`` Datums with ``impath`` joined onto ``root`` (as CoOp does).
    """
    data = _read_json(path, "CoOp split file")
    if not isinstance(data, dict) or not {"train", "test"} <= set(data):
        raise SplitError(
            f"CoOp split file {path} must be a JSON object with 'train', 'val' and 'test' lists"
        )
    out = []
    for key in ("train", "val", "test"):
        entries = data.get(key, [])
        if not isinstance(entries, list):
            raise SplitError(f"CoOp split file {path}: {key!r} must be a list")
        items = []
        for i, e in enumerate(entries):
            if not _is_entry(e, lengths=(3,)):
                raise SplitError(
                    f"CoOp split file {path}: {key}[{i}] = {e!r} is not [relpath, label, classname]"
                )
            items.append(Datum(impath=os.path.join(root, e[0]), label=e[1], classname=str(e[2])))
        out.append(items)
    return out[0], out[1], out[2]
