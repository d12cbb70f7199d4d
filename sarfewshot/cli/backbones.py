"""`sarfewshot backbones` (placeholder until its issue lands; replaced by the real subcommand)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `backbones` subcommand."""
    parser = sub.add_parser("backbones", help="(not built yet)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("backbones is not built yet")
