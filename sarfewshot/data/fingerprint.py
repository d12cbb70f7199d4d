"""Dataset fingerprints: which version of a dataset folder a result was computed on.

A fingerprint covers the listing (class names, split, relative path and label of every image)
and, per file, its size and the sha256 of its bytes. Content hashes are what make the
fingerprint trustworthy: a chip replaced in place with the same name and size changes it. They
are cheap because each file's hash is remembered in a small JSON memo keyed by the file's size
and modification time, so a rerun on an unchanged folder only ``stat``\\ s its files.

Modification times decide when a file is hashed again; they never enter the fingerprint, so two
machines holding identical copies of a folder agree on it and their records merge.

Folders larger than :data:`CONTENT_HASH_LIMIT` bytes (``SARFEWSHOT_HASH_LIMIT`` overrides it)
are fingerprinted from size and modification time instead (``method: "stat"``): such a
fingerprint still detects added, removed and rewritten files, but copies on other machines get
other fingerprints.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sarfewshot.data.base import Listing
from sarfewshot.data.listing import progress as progress_bar
from sarfewshot.utils.io import atomic_write_json, sha256_file, sha256_text

FINGERPRINT_VERSION = 1
CONTENT_HASH_LIMIT = 8 << 30  # bytes; above this a folder is fingerprinted by stat only
MEMO_FORMAT = "sarfewshot-hash-memo"


@dataclass(frozen=True)
class DatasetFingerprint:
    """The version of a dataset folder.

    Attributes:
        sha256: the fingerprint itself (hex).
        method: ``"content"`` (sizes and content hashes) or ``"stat"`` (sizes and mtimes).
        files: number of listed images.
        bytes: their total size.
    """

    sha256: str
    method: str
    files: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """The form stored in records and cache manifests."""
        return {
            "version": FINGERPRINT_VERSION,
            "sha256": self.sha256,
            "method": self.method,
            "files": self.files,
            "bytes": self.bytes,
        }

    @property
    def short(self) -> str:
        """The first 12 hex digits (file names, table labels)."""
        return self.sha256[:12]


def _entries(listing: Listing) -> list[tuple[str, str, int]]:
    items = [("train", d.impath, d.label) for d in listing.train]
    return items + [("test", d.impath, d.label) for d in listing.test]


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        from sarfewshot.errors import DatasetError

        raise DatasetError(f"cannot read dataset file {path}: {exc.strerror or exc}") from None


def _load_memo(path: Path | None) -> dict[str, list]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a damaged memo only costs re-hashing
    ok = isinstance(data, dict) and data.get("format") == MEMO_FORMAT
    return data.get("files", {}) if ok and isinstance(data.get("files"), dict) else {}


def _content_hashes(
    paths: list[str], stats: list[os.stat_result], memo_file: Path | None, progress: bool
) -> list[str]:
    """sha256 of every file, reusing the memo's entry when size and mtime are unchanged."""
    memo = _load_memo(memo_file)
    fresh: dict[str, list] = {}
    out = []
    todo = [
        i
        for i, (p, st) in enumerate(zip(paths, stats))
        if memo.get(p, [None, None])[:2] != [st.st_size, st.st_mtime_ns]
    ]
    hashed = {i: None for i in todo}
    for i in progress_bar(todo, desc="hash dataset files", enabled=progress and bool(todo)):
        hashed[i] = sha256_file(paths[i])
    for i, (p, st) in enumerate(zip(paths, stats)):
        digest = hashed[i] if i in hashed else memo[p][2]
        fresh[p] = [st.st_size, st.st_mtime_ns, digest]
        out.append(digest)
    if memo_file is not None and fresh != memo:
        atomic_write_json(memo_file, {"format": MEMO_FORMAT, "files": fresh}, indent=0)
    return out


def hash_limit() -> int:
    """Total bytes up to which a folder gets content hashes (``SARFEWSHOT_HASH_LIMIT``)."""
    value = os.environ.get("SARFEWSHOT_HASH_LIMIT", "")
    return int(value) if value.strip() else CONTENT_HASH_LIMIT


def dataset_fingerprint(
    listing: Listing, memo_file: Path | None = None, progress: bool = False
) -> DatasetFingerprint:
    """Fingerprint the folder behind ``listing``.

    Args:
        listing: the dataset's listing (paths relative to ``listing.root``).
        memo_file: JSON file that remembers content hashes between runs (None: hash every file).
        progress: show a bar while hashing.

    Returns:
        The fingerprint; equal for identical folders, different after any file is added,
        removed, relabelled or changed.

    Raises:
        DatasetError: a listed file can no longer be read.
    """
    entries = _entries(listing)
    paths = [os.path.join(listing.root, rel) for _, rel, _ in entries]
    stats = [_stat(p) for p in paths]
    total = sum(st.st_size for st in stats)
    if total <= hash_limit():
        method, per_file = "content", _content_hashes(paths, stats, memo_file, progress)
    else:
        method, per_file = "stat", [str(st.st_mtime_ns) for st in stats]
    lines = [
        f"{part}\t{rel}\t{label}\t{st.st_size}\t{digest}"
        for (part, rel, label), st, digest in zip(entries, stats, per_file)
    ]
    lines.sort()
    header = f"{method}\nclasses\t" + "\t".join(listing.classnames)
    return DatasetFingerprint(sha256_text("\n".join([header, *lines])), method, len(paths), total)


def content_hashes(
    paths: Sequence[str | os.PathLike], memo_file: Path | None = None, progress: bool = False
) -> list[str]:
    """The sha256 (hex) of each file's bytes, through the same memo as the fingerprint.

    Raises:
        DatasetError: a file cannot be read.
    """
    names = [os.fspath(p) for p in paths]
    return _content_hashes(names, [_stat(p) for p in names], memo_file, progress)
