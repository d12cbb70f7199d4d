"""Dataset fingerprints: which version of a dataset folder a result was computed on.

A fingerprint covers the listing (class names, split, relative path and label of every image)
and, per file, its size and the sha256 of its bytes. Content hashes are what make the
fingerprint trustworthy: a chip replaced in place with the same name and size changes it. They
are cheap because each file's hash is remembered in a small JSON memo keyed by the file's size,
modification time, status-change time (``st_ctime_ns``) and inode number, so a rerun on an
unchanged folder only ``stat``\\ s its files.

Size and modification time alone are not enough: ``touch -r``, ``cp -p`` or an archive
extracted twice set the modification time back by hand, and fixed-size chips (ATRNet-STAR's
TIFFs) never change size. The kernel sets the status-change time on every write or rename and
no user call can set it back, and a file replaced by a rename gets another inode, so a rewritten
chip is always hashed again. A file whose status changed in the last :data:`RACY_NS` is hashed
but not remembered, because file times advance in clock ticks and a rewrite within the same
tick as our ``stat`` would otherwise keep every field.

These stat fields decide when a file is hashed again; they never enter the fingerprint, so two
machines holding identical copies of a folder agree on it and their records merge.

Folders larger than :data:`CONTENT_HASH_LIMIT` bytes (``SARFEWSHOT_HASH_LIMIT`` overrides it)
are fingerprinted from the same stat fields instead (``method: "stat"``: size, modification
time, status-change time and inode): such a fingerprint still detects added, removed and
rewritten files (also with the modification time set back), but copies on other machines get
other fingerprints.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sarfewshot.data.base import Listing
from sarfewshot.data.listing import progress as progress_bar
from sarfewshot.utils.io import atomic_write_json, sha256_file, sha256_text

FINGERPRINT_VERSION = 1
CONTENT_HASH_LIMIT = 8 << 30  # bytes; above this a folder is fingerprinted by stat only
MEMO_FORMAT = "sarfewshot-hash-memo"
# A file changed less than this long ago is hashed but not remembered: file times advance in
# clock ticks (milliseconds), so a rewrite within the tick of our ``stat`` could keep every
# stat field; such "racy" entries are hashed again next time (as git does for its index).
RACY_NS = 2_000_000_000
MEMO_VERSION = 2  # entries [size, mtime_ns, ctime_ns, inode, sha256]; version 1 had no ctime/inode


@dataclass(frozen=True)
class DatasetFingerprint:
    """The version of a dataset folder.

    Attributes:
        sha256: the fingerprint itself (hex).
        method: ``"content"`` (sizes and content hashes) or ``"stat"`` (sizes, mtimes, ctimes
            and inodes).
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
    ok = ok and data.get("version") == MEMO_VERSION  # older memos lack ctime and inode
    return data.get("files", {}) if ok and isinstance(data.get("files"), dict) else {}


def memo_key(st: os.stat_result) -> list[int]:
    """What must be unchanged for a remembered hash to be reused.

    Size and mtime alone can be restored by hand (``touch -r``, ``cp -p``); the status-change
    time cannot, and a file replaced by a rename has another inode.
    """
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _content_hashes(
    paths: list[str], stats: list[os.stat_result], memo_file: Path | None, progress: bool
) -> list[str]:
    """sha256 of every file, reusing the memo's entry when its :func:`memo_key` is unchanged."""
    memo = _load_memo(memo_file)
    fresh: dict[str, list] = {}
    out = []
    keys = [memo_key(st) for st in stats]
    todo = [i for i, (p, key) in enumerate(zip(paths, keys)) if memo.get(p, [])[:4] != key]
    hashed = {i: None for i in todo}
    for i in progress_bar(todo, desc="hash dataset files", enabled=progress and bool(todo)):
        hashed[i] = sha256_file(paths[i])
    for i, (p, key) in enumerate(zip(paths, keys)):
        digest = hashed[i] if i in hashed else memo[p][4]
        fresh[p] = [*key, digest]
        out.append(digest)
    now = time.time_ns()
    fresh = {p: e for p, e in fresh.items() if now - e[2] >= RACY_NS}  # ctime: not racy
    if memo_file is not None and fresh != memo:
        memo_doc = {"format": MEMO_FORMAT, "version": MEMO_VERSION, "files": fresh}
        atomic_write_json(memo_file, memo_doc, indent=0)
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
        # the memo key's fields: a rewrite with its mtime set back still changes ctime
        method, per_file = "stat", [":".join(map(str, memo_key(st)[1:])) for st in stats]
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


def hashes_tensor(hashes: Sequence[str]) -> Any:
    """Distinct hex digests, sorted, as a (n, 32) uint8 tensor (how checkpoints carry them)."""
    import torch

    raw = b"".join(bytes.fromhex(h) for h in sorted(set(hashes)))
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(-1, 32)


def tensor_hashes(tensor: Any) -> set[str]:
    """Inverse of :func:`hashes_tensor`: the set of hex digests."""
    raw = tensor.contiguous().numpy().tobytes()
    return {raw[i : i + 32].hex() for i in range(0, len(raw), 32)}
