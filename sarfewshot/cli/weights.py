"""`sarfewshot weights fetch NAME`: download a backbone's weights from its first hub source."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `weights` subcommand (one action: ``fetch``)."""
    parser = sub.add_parser(
        "weights",
        help="download a registered backbone's weights from a public hub",
        description=(
            "fetch NAME downloads the weights of backbone NAME from the first of its known "
            "sources (see `sarfewshot backbones`) that the installed clients support: a "
            "Hugging Face file through huggingface_hub (pip install 'sarfewshot[hub]'), into "
            "the standard Hugging Face cache (HF_HUB_CACHE). It prints the local path and the "
            "--weights hf://... value that loads it, offline too with HF_HUB_OFFLINE=1. A pinned "
            "sha256 is checked."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fetch = actions.add_parser(
        "fetch",
        help="download NAME's weights into the hub cache",
        description=(
            "Download the weights of backbone NAME from its first Hugging Face source into the "
            "Hugging Face cache, check a pinned sha256, and print the local path and the "
            "--weights value that loads it."
        ),
    )
    fetch.add_argument("name", help="a registered backbone name (sarfewshot backbones)")
    fetch.set_defaults(func=run_fetch)
    return parser


def run_fetch(args: argparse.Namespace) -> int:
    """Download and check the file; exit 0, or raise WeightsError naming the sources."""
    from sarfewshot.errors import WeightsError
    from sarfewshot.models import hub
    from sarfewshot.models.registry import get_backbone_spec
    from sarfewshot.utils.io import sha256_file

    spec = get_backbone_spec(args.name)
    source = hub.first_hub_source(spec.sources)
    if source is None:
        raise WeightsError(f"backbone {spec.name!r}: {_why_no_download(spec.sources)}")
    uri = source.uri()
    path = hub.hf_download(uri)
    hub.check_sha256(path, sha256_file(path), source.sha256, uri)
    print(f"{spec.name}: {path}")
    print(f"use: --backbone {spec.name} --weights {uri}")
    return 0


def _why_no_download(sources) -> str:
    """Why no source can be downloaded: none is a Hugging Face file, or the client is missing."""
    import importlib.util

    listed = "; ".join(s.describe() for s in sources) or "none registered"
    if not any(s.kind == "hf" and s.file for s in sources):
        return (
            "no source is a single Hugging Face file (hf://OWNER/REPO/PATH) that fetch can "
            f"download; get the file by hand from: {listed}"
        )
    if importlib.util.find_spec("huggingface_hub") is None:
        return f"a Hugging Face file needs pip install 'sarfewshot[hub]'; sources: {listed}"
    return f"no source this installation can download; get it by hand from: {listed}"
