"""`sarfewshot data`: list dataset plug-ins, verify a folder, write synthetic data, share splits.

- ``data list [NAME]``: registered datasets with their aliases, expected layouts and class
  lists; with NAME, one dataset's fixed class list (label order) and settings.
- ``data verify --dataset NAME --root DIR``: per split and class image counts and chip sizes;
  every image is decoded; unreadable files are named. Exit 1 on a bad file, 2 on a wrong layout.
- ``data verify SHARDS/``: a packed shard folder: every file against the index's sha256 and
  every sample against its CRC-32; damaged shards and samples are named. Exit 1 on damage.
- ``data synth --out DIR``: write the embedded synthetic dataset (folder layout, 8-bit PNG).
- ``data export-splits`` / ``data import-splits``: one JSON bundle of split files, so two labs can
  run on identical support sets.
- ``data pack --data DIR [DIR ...] --out SHARDS/``: pack unlabelled chips into WebDataset tar
  shards plus an index (``sarfewshot.data.shards``), read by ``pretrain --data SHARDS/``.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `data` subcommand and its actions."""
    parser = sub.add_parser(
        "data",
        help="list, verify and synthesise datasets; share splits",
        description="Dataset tools: list the dataset plug-ins, verify a dataset folder, write "
        "the synthetic dataset, and export or import split files.",
    )
    parser.set_defaults(func=run, data_parser=parser)
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    _add_list(actions)
    _add_verify(actions)
    _add_synth(actions)
    _add_export_splits(actions)
    _add_import_splits(actions)
    _add_pack(actions)
    return parser


def _add_list(actions: argparse._SubParsersAction) -> None:
    """The `data list` action: the registered datasets, or one of them."""
    listing = actions.add_parser(
        "list",
        help="registered datasets, aliases, layouts, class lists and settings",
        description="Print every registered dataset with its aliases, the folder layout it "
        "expects under --root and its class list (fixed, or read from the folders), then the "
        "options and settings of the plug-ins that have them. With NAME: that dataset alone, "
        "with its fixed class names in label order.",
    )
    listing.add_argument(
        "name", nargs="?", metavar="NAME", help="a dataset name or alias, e.g. mstar"
    )


def _add_verify(actions: argparse._SubParsersAction) -> None:
    """The `data verify` action: check a dataset folder or a packed shard folder."""
    verify = actions.add_parser(
        "verify",
        help="count, decode and size-check a dataset folder, or check packed shards",
        description="List a dataset folder (--dataset, --root), count the images per split "
        "and class, decode every image and report chip sizes; exit 1 on an unreadable file, 2 "
        "on a wrong layout. Or check a packed shard folder (SHARDS/, from data pack): every "
        "tar and offset table against the sha256 in index.json and every sample against its "
        "CRC-32, naming each damaged shard and sample; exit 1 on damage.",
    )
    verify.add_argument(
        "shards", nargs="?", metavar="SHARDS", help="a packed shard folder (data pack --out)"
    )
    verify.add_argument("--dataset", help="dataset name or alias (see data list)")
    verify.add_argument("--root", help="the dataset folder")
    verify.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="plug-in option, e.g. mode=synth2real for sample (repeatable)",
    )
    verify.add_argument(
        "--no-decode", action="store_true", help="only list and count (skip decoding every image)"
    )


def _add_synth(actions: argparse._SubParsersAction) -> None:
    """The `data synth` action: write the synthetic SAR dataset."""
    synth = actions.add_parser(
        "synth",
        help="write the synthetic SAR dataset",
        description="Write the embedded SAR-like synthetic dataset as 8-bit PNG chips in "
        "train/<class>/ and test/<class>/ folders (read it with --dataset synthetic).",
    )
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument(
        "--train-per-class", type=int, default=40, metavar="N", help="train chips per class"
    )
    synth.add_argument(
        "--test-per-class", type=int, default=40, metavar="N", help="test chips per class"
    )
    synth.add_argument(
        "--seed", type=int, default=0, help="seed of the generator (default: 0, a real seed)"
    )
    synth.add_argument("--size", type=int, default=128, help="chip size in pixels")


def _add_export_splits(actions: argparse._SubParsersAction) -> None:
    """The `data export-splits` action: bundle a split folder into one file."""
    export = actions.add_parser(
        "export-splits",
        help="bundle a split folder into one JSON file",
        description="Bundle every split file of a split folder into one JSON file, so another "
        "lab can run on identical support sets.",
    )
    export.add_argument(
        "--split-dir", required=True, help="split folder to read (e.g. runs/splits)"
    )
    export.add_argument("--out", required=True, help="bundle file to write")


def _add_import_splits(actions: argparse._SubParsersAction) -> None:
    """The `data import-splits` action: unpack a split bundle."""
    imp = actions.add_parser(
        "import-splits",
        help="unpack a split bundle into a split folder",
        description="Unpack a bundle written by export-splits into a split folder; a differing "
        "existing split file stops the import unless --overwrite.",
    )
    imp.add_argument("--in", dest="bundle", required=True, help="bundle file to read")
    imp.add_argument("--split-dir", required=True, help="split folder to write the files into")
    imp.add_argument("--overwrite", action="store_true", help="replace differing split files")


def _add_pack(actions: argparse._SubParsersAction) -> None:
    pack = actions.add_parser(
        "pack",
        help="pack pretraining chips into WebDataset tar shards",
        description="Pack every image under the --data folders (the files pretrain --data "
        "would read, in the same order) into WebDataset tar shards of one-channel chips "
        "(8- and 16-bit kept as integers) plus index.json (counts, sizes, sha256). Packing the "
        "same folders twice gives byte-identical files. Train with pretrain --data SHARDS/.",
    )
    pack.add_argument("--data", nargs="+", required=True, metavar="DIR", help="image folders")
    pack.add_argument("--out", required=True, metavar="SHARDS", help="a new or empty folder")
    pack.add_argument(
        "--shard-size", default="1GB", help="largest shard size, e.g. 1GB, 256MB (default 1GB)"
    )


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action."""
    handlers = {
        "list": _list,
        "verify": _verify,
        "synth": _synth,
        "export-splits": _export,
        "import-splits": _import,
        "pack": _pack,
    }
    handler = handlers.get(getattr(args, "data_command", None))
    if handler is None:
        args.data_parser.print_help()
        return 2
    return handler(args)


def _classes_summary(cls: type) -> str:
    fixed = tuple(getattr(cls, "classes", ()) or ())
    return f"{len(fixed)} fixed" if fixed else "read from the data"


def _list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from sarfewshot.data.registry import DATASET_REGISTRY, get_dataset, list_datasets

    if getattr(args, "name", None):
        return _list_one(get_dataset(args.name))
    rows = []
    for name in list_datasets():
        aliases = [a for a in DATASET_REGISTRY.aliases(name) if a != name.lower()]
        cls = get_dataset(name)
        rows.append((name, ", ".join(aliases), getattr(cls, "layout", ""), _classes_summary(cls)))
    print(tabulate(rows, headers=("dataset", "aliases", "layout", "classes")))
    for name in list_datasets():  # plug-ins that describe their options and settings
        _print_options(name, get_dataset(name))
    print("\nsarfewshot data list NAME prints a dataset's class names in label order.")
    return 0


def _print_options(name: str, cls: type) -> None:
    if getattr(cls, "options_help", ""):
        print(f"\n{name} options: {cls.options_help}")
    if callable(getattr(cls, "settings_text", None)):
        print(f"{name} settings:\n" + textwrap.indent(cls.settings_text(), "  "))


def _list_one(cls: type) -> int:
    """One dataset: aliases, layout, its fixed class names (label = position) and settings."""
    from sarfewshot.data.registry import DATASET_REGISTRY

    name = cls.name if isinstance(getattr(cls, "name", None), str) else cls.__name__
    aliases = [a for a in DATASET_REGISTRY.aliases(name) if a != name.lower()]
    print(f"dataset {name}" + (f" (aliases: {', '.join(aliases)})" if aliases else ""))
    print(f"layout: {getattr(cls, 'layout', '')}")
    fixed = tuple(getattr(cls, "classes", ()) or ())
    if fixed:
        print(f"classes ({len(fixed)}, fixed; label: name):")
        for label, cname in enumerate(fixed):
            print(f"  {label:3d}: {cname}")
        print(
            "a class folder outside the list is an error unless --option extra_classes=true "
            "(DATASET.SAR.EXTRA_CLASSES) keeps it as an extra class, after these"
        )
    else:
        print("classes: the class folders under --root (no fixed list)")
    _print_options(name, cls)
    return 0


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict (integer-looking values become ints)."""
    from sarfewshot.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r} must be KEY=VALUE")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def _size_range(sizes: list[tuple[int, int]]) -> str:
    if not sizes:
        return "-"
    lo, hi = min(sizes), max(sizes)
    return f"{lo[0]}x{lo[1]}" if lo == hi else f"{lo[0]}x{lo[1]} .. {hi[0]}x{hi[1]}"


def _decode(listing, decode: bool) -> tuple[dict, list[str]]:
    """Chip sizes per (split, class) and ``path: reason`` lines for unreadable files."""
    from sarfewshot.data.io import read_sar
    from sarfewshot.data.listing import progress

    sizes: dict[tuple[str, str], list] = {}
    bad: list[str] = []
    items = [("train", d) for d in listing.train] + [("test", d) for d in listing.test]
    for split, d in progress(items, desc="decode images", enabled=decode):
        sizes.setdefault((split, d.classname), [])
        if not decode:
            continue
        try:
            sizes[(split, d.classname)].append(read_sar(listing.abspath(d)).amplitude.shape)
        except Exception as exc:  # noqa: BLE001 - verify reports every bad file, then fails
            bad.append(f"{listing.abspath(d)}: {exc}")
    return sizes, bad


def _verify_shards(folder: str) -> int:
    from sarfewshot.data.shards import read_index, unchecked_message, verify_shards

    index = read_index(folder)
    problems = verify_shards(folder)
    files = 2 * len(index.shards)
    print(
        f"{folder}: {len(index.shards)} shard(s), {index.count} samples, "
        f"index version {index.version}"
    )
    if problems:
        return _report_errors(problems, "problem(s)")
    if not index.checked:
        print(f"all {files} files match the sha256 in index.json; {unchecked_message(folder)}")
        return 0
    print(f"all {files} files match index.json and all {index.count} samples their CRC-32")
    return 0


def _report_errors(lines: list[str], what: str) -> int:
    """Print ``error: N WHAT:`` and one indented line each on stderr; the exit status 1."""
    print(f"error: {len(lines)} {what}:", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    return 1


def _verify(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from sarfewshot.data.build import build_listing
    from sarfewshot.errors import ConfigError

    if args.shards and (args.dataset or args.root):
        raise ConfigError(f"data verify {args.shards}: a shard folder takes no --dataset/--root")
    if args.shards:
        return _verify_shards(args.shards)
    if not (args.dataset and args.root):
        raise ConfigError("data verify: give --dataset NAME --root DIR, or a shard folder SHARDS/")

    dataset, listing = build_listing(args.dataset, args.root, **parse_options(args.option))
    sizes, bad = _decode(listing, decode=not args.no_decode)
    rows = []
    for split, items in (("train", listing.train), ("test", listing.test)):
        for label, cname in enumerate(listing.classnames):
            n = sum(1 for d in items if d.label == label)
            rows.append((split, cname, n, _size_range(sizes.get((split, cname), []))))
        every = [s for (sp, _), v in sizes.items() if sp == split for s in v]
        rows.append((split, "total", len(items), _size_range(every)))
    print(f"dataset {dataset.name} at {listing.root}")
    print(f"listing sha256 {listing.sha256()}")
    print(tabulate(rows, headers=("split", "class", "images", "chip sizes (HxW)")))
    print(f"{len(listing.train)} train and {len(listing.test)} test images")
    if args.no_decode:
        print("images not decoded (--no-decode)")
        return 0
    if bad:
        return _report_errors(bad, "unreadable file(s)")
    print(f"all {len(listing.train) + len(listing.test)} images decoded")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from sarfewshot.datasets.synthetic import generate_synthetic

    out = generate_synthetic(
        args.out, args.train_per_class, args.test_per_class, size=args.size, seed=args.seed
    )
    print(f"wrote the synthetic dataset to {out} (use --dataset synthetic --root {out})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from sarfewshot.data.splits import export_splits

    n = export_splits(args.split_dir, args.out)
    print(f"exported {n} split file(s) from {args.split_dir} to {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from sarfewshot.data.splits import import_splits

    written = import_splits(args.bundle, args.split_dir, overwrite=args.overwrite)
    print(f"imported {len(written)} split file(s) into {args.split_dir}")
    return 0


def pack_sources(roots: list[str]) -> list[tuple[Any, str]]:
    """The files ``pretrain --data ROOTS`` reads, in its order, with ``<root name>/<relpath>``."""
    from pathlib import Path

    from sarfewshot.pretrain.data import find_unlabelled_images

    out = []
    for root in roots:
        base = Path(root).expanduser()
        for path in find_unlabelled_images([base]):
            out.append((path, f"{base.resolve().name}/{path.relative_to(base).as_posix()}"))
    return out


def _pack(args: argparse.Namespace) -> int:
    from sarfewshot.data.shards import pack_shards, parse_size
    from sarfewshot.utils.progress import Heartbeat

    size = parse_size(args.shard_size)
    files = pack_sources(args.data)
    beat = Heartbeat("pack", total=len(files), unit="chip")
    index = pack_shards(files, args.out, size, on_sample=beat.update)
    total = sum(s.tar_bytes for s in index.shards)
    print(
        f"packed {index.count} chips into {len(index.shards)} shard(s) ({total / 1e6:.1f} MB) "
        f"in {args.out}; train with: sarfewshot pretrain --data {args.out} ..."
    )
    return 0
