"""`sarfewshot backbones`: the registered backbones and whether their weights were found."""

from __future__ import annotations

import argparse

TORCHGEO_FORM = "torchgeo:<Enum>.<MEMBER>"
TORCHGEO_EXAMPLE = "torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO"


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `backbones` subcommand."""
    parser = sub.add_parser(
        "backbones",
        help="list backbones, their architectures and whether their weights are found",
        description=(
            "List the registered backbones with their default architecture, the weights file "
            "each expects under $SARFEWSHOT_WEIGHTS (or --weights-dir), whether it is there, and "
            "the known public sources of each (Hugging Face, Kaggle, BaiduYun). Any timm model "
            "also works as timm:<model_name>, torchgeo's SAR-band weights as "
            f"{TORCHGEO_FORM} (e.g. {TORCHGEO_EXAMPLE}); --weights also takes "
            "hf://OWNER/REPO/PATH[@REV]."
        ),
    )
    parser.add_argument(
        "--weights-dir",
        default=None,
        metavar="DIR",
        help="folder holding the weight files (default: $SARFEWSHOT_WEIGHTS)",
    )
    parser.add_argument("--archs", action="store_true", help="also list the architecture presets")
    parser.add_argument(
        "--torchgeo",
        action="store_true",
        help=(
            "list every SAR-band member of torchgeo's weight enums (torchgeo:<Enum>.<MEMBER>) with "
            "its model, bands, input mapping and status (supported, or refused: why) instead"
        ),
    )
    parser.set_defaults(func=run)
    return parser


def _found_cell(row: dict) -> str:
    if not row["expected_file"]:
        return "not needed"
    if row["found"]:
        return "found"
    if row.get("hub_default"):
        return "hub"  # read from the Hugging Face cache (downloaded on first use)
    return "missing" if row["needs_weights"] else "optional"


def _source_lines(rows: list[dict]) -> list[str]:
    """One ``- names: sources`` line per distinct source list (release names share theirs)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for row in rows:
        if row["sources"]:
            groups.setdefault(tuple(row["sources"]), []).append(row["name"])
    return [f"- {', '.join(names)}: {'; '.join(src)}" for src, names in groups.items()]


def _torchgeo_table() -> int:
    """Every SAR-band torchgeo member, one row each; nothing is built or downloaded."""
    from tabulate import tabulate

    from sarfewshot.models.zoo.torchgeo import member_status, sar_members

    rows = [member_status(name) for name in sar_members()]
    keys = ["name", "model", "bands", "input", "cached", "status"]
    print(tabulate([[r[k] for k in keys] for r in rows], headers=keys))
    supported = sum(r["status"] == "supported" for r in rows)
    print()
    print(
        f"{len(rows)} SAR-band members: {supported} supported, {len(rows) - supported} refused. "
        "cached: the weights are in torch's hub cache (else --weights PATH, or a download on "
        "first use); input mappings: docs/zoo.md."
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Print the backbone table (or, with ``--torchgeo``, torchgeo's SAR members); exit 0."""
    from tabulate import tabulate

    if args.torchgeo:
        return _torchgeo_table()

    from sarfewshot.models import backbone_status, list_archs, list_backbones
    from sarfewshot.models.checkpoint import RELEASE_WHERE
    from sarfewshot.models.registry import resolve_weights_dir

    rows = [backbone_status(name, args.weights_dir) for name in list_backbones()]
    table = [
        [r["name"], r["family"], r["arch"], r["pooling"], r["expected_file"] or "-", _found_cell(r)]
        for r in rows
    ]
    table += [
        ["timm:<model_name>", "timm", "timm:<model_name>", "timm", "-", "optional"],
        # e.g. torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO (pip install 'sarfewshot[torchgeo]')
        [TORCHGEO_FORM, "torchgeo", "from the weights", "torchgeo", "-", "torchgeo downloads"],
    ]
    headers = ["name", "family", "default arch", "pooling", "expected file", "weights"]
    print(tabulate(table, headers=headers))
    folder = resolve_weights_dir(args.weights_dir)
    print()
    print(f"weights folder: {folder if folder is not None else '(not set: $SARFEWSHOT_WEIGHTS)'}")
    print(f"Where to get them: {RELEASE_WHERE}.")
    print()
    print("Known public sources (`sarfewshot weights fetch NAME` downloads the first hf: file):")
    for line in _source_lines(rows):
        print(line)
    print(
        f"{TORCHGEO_FORM}: torchgeo's weights with SAR bands (VV/VH/HH/HV), e.g. "
        f"{TORCHGEO_EXAMPLE}; torchgeo downloads them (pip install 'sarfewshot[torchgeo]')."
    )
    print(
        "weights 'hub': without --weights the name reads its first hf: file from the Hugging "
        "Face cache (downloaded on first use; HF_HUB_OFFLINE=1 reads only the cache)."
    )
    print("With a checkpoint the architecture is inferred from its keys; --arch overrides it.")
    if args.archs:
        print()
        print("architecture presets: " + ", ".join(list_archs()))
    return 0
