"""Contamination: how many of a cell's scored images its backbone saw in pretraining.

A checkpoint written by ``sarfewshot pretrain`` carries its data record under ``data`` (see
:mod:`sarfewshot.pretrain.provenance`): ``data.content.sha256`` is a (n, 32) uint8 tensor of the
sorted content hashes of the images it trained on. A cell's scored images (TEST, or the
validation pool under ``--eval-split val``) are hashed the same way (sha256 of the file bytes)
and looked up in it, so the count is exact whatever the names or folders. Weights without that
record (released checkpoints, ImageNet weights, random init) give ``method: "unknown"`` and
``seen: None``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

METHODS = ("sha256", "sketch", "unknown")

# per process: the weights' hash set (None: no record), the scored files' hashes
_SEEN_SETS: dict[tuple[str, str | None], set[str] | None] = {}
_FILE_HASHES: dict[tuple, str] = {}


def pretraining_hashes(weights: str | None, weights_sha256: str | None) -> set[str] | None:
    """The content hashes a weights file was pretrained on, or None when it does not say."""
    if not weights or not os.path.isfile(str(weights)):
        return None
    key = (str(weights), weights_sha256)
    if key not in _SEEN_SETS:
        _SEEN_SETS[key] = _read_hashes(str(weights))
    return _SEEN_SETS[key]


def _read_hashes(path: str) -> set[str] | None:
    import argparse

    import torch

    try:
        # mmap: only the hash tensor is read, not the weights (already loaded by the build)
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - safetensors, legacy formats: no data record to read
        return None
    data = ckpt.get("data") if isinstance(ckpt, dict) else None
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, dict) or content.get("method") != "sha256":
        return None
    from sarfewshot.data.fingerprint import tensor_hashes

    return tensor_hashes(content["sha256"])


def file_hashes(paths: Sequence[str]) -> list[str]:
    """sha256 of each file, hashed once per process (keyed on the path and the fingerprint
    memo's key: size, mtime, ctime and inode)."""
    from sarfewshot.data.fingerprint import content_hashes, memo_key

    keys = [(path, *memo_key(os.stat(path))) for path in paths]
    todo = [k for k in dict.fromkeys(keys) if k not in _FILE_HASHES]
    for k, digest in zip(todo, content_hashes([k[0] for k in todo])):
        _FILE_HASHES[k] = digest
    return [_FILE_HASHES[k] for k in keys]


def contamination(backbone_info: dict[str, Any], root: str, items: Sequence[Any]) -> dict:
    """The record's ``contamination`` entry: ``{"seen", "scored", "method"}``.

    Args:
        backbone_info: the resolved backbone's info (``weights``, ``weights_sha256``).
        root: the listing root the items' ``impath`` values are relative to.
        items: the scored Datums.
    """
    seen_set = pretraining_hashes(backbone_info.get("weights"), backbone_info.get("weights_sha256"))
    if seen_set is None:
        return {"seen": None, "scored": len(items), "method": "unknown"}
    scored = file_hashes([os.path.join(root, d.impath) for d in items])
    return {"seen": sum(h in seen_set for h in scored), "scored": len(items), "method": "sha256"}
