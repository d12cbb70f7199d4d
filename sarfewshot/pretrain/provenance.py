"""The pretraining data record: which images a run trained on, carried in its checkpoints.

A checkpoint's ``data`` entry holds:

- ``format`` (``sarfewshot-pretrain-data``), ``version``, ``kind`` (``folders`` or ``shards``),
  ``roots`` (the ``--data`` paths as given, for messages only);
- ``fingerprint``: the sha256 of the training listing, in sample order: per image its root's
  position, relative path, size and content sha256 (folders), or of the shard ``index.json``
  (which holds every shard file's sha256) plus the samples kept. It does not depend on where the
  folders sit, so a moved copy resumes; any added, removed, replaced or reordered image changes it;
- ``files``: the number of images trained on;
- ``excluded``: ``{"count": images left out, "held_out": size of the held-out set, "specs": the
  --exclude-split values}``;
- ``content``: ``{"method": "sha256", "sha256": uint8 tensor (n, 32)}``, the sorted distinct
  content hashes of the images trained on (``method: "unknown"`` and no tensor for shards packed
  without source hashes). ``eval`` counts the scored images found in it (the contamination
  count). Exact hashes, not a sketch: at one million chips they take 32 MB, measured against a
  Bloom filter in ``docs/architecture.md``.

Content hashes are those of the evaluation datasets (sha256 of the file bytes, remembered in a
memo under the output folder), so a pretraining image and a scored image match whatever their
names or folder layout.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sarfewshot.data.fingerprint import hashes_tensor, tensor_hashes
from sarfewshot.utils.io import sha256_text

DATA_FORMAT = "sarfewshot-pretrain-data"
DATA_VERSION = 1
MEMO_NAME = "data-hash-memo.json"


@dataclass
class PretrainData:
    """The images of a pretraining run, after any exclusion.

    Attributes:
        kind: ``folders`` or ``shards``.
        roots: the ``--data`` paths as given.
        files: image paths (folders) in sample order; empty for shards.
        keep: shard sample numbers trained on, in order (shards; None: all).
        hashes: content sha256 (hex) per image trained on; None when unknown (old shards).
        fingerprint: see the module docstring.
        excluded: ``{"count", "held_out", "specs"}``.
    """

    kind: str
    roots: list[str]
    fingerprint: str
    count: int
    files: list[Path] = field(default_factory=list)
    keep: list[int] | None = None
    hashes: list[str] | None = None
    excluded: dict[str, Any] = field(default_factory=dict)
    # hashes of images seen before a resume on changed data (see absorb)
    earlier: set[str] = field(default_factory=set)
    _content: dict[str, Any] | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """The checkpoint's ``data`` entry (tensors, ints and strings: weights_only loads it)."""
        if self._content is None:
            self._content = {"method": "unknown"}
            if self.hashes is not None:
                seen = set(self.hashes) | self.earlier
                self._content = {"method": "sha256", "sha256": hashes_tensor(seen)}
        return {
            "format": DATA_FORMAT,
            "version": DATA_VERSION,
            "kind": self.kind,
            "roots": list(self.roots),
            "fingerprint": self.fingerprint,
            "files": self.count,
            "excluded": dict(self.excluded),
            "content": self._content,
        }

    def absorb(self, earlier: dict[str, Any]) -> None:
        """Keep the hashes of an earlier record (a resume on changed data): the weights saw both."""
        content = earlier.get("content") or {}
        if content.get("method") != "sha256":
            self.hashes = None  # the earlier images are unknown, so the union is too
        else:
            self.earlier |= tensor_hashes(content["sha256"])
        self._content = None


def describe(record: dict[str, Any] | None) -> str:
    """One line naming a data record's version (for error messages)."""
    if not record:
        return "no data record"
    roots = ", ".join(map(str, record.get("roots", ()))) or "?"
    left_out = (record.get("excluded") or {}).get("count")
    extra = f" ({left_out} left out by --exclude-split)" if left_out else ""
    return (
        f"{record.get('files')} image(s) under {roots}{extra}, "
        f"fingerprint {record['fingerprint'][:12]}"
    )


def collect(
    roots: Sequence[str],
    memo_dir: Path,
    exclude: set[str] | None = None,
    specs: Sequence[str] = (),
) -> PretrainData:
    """List and hash the pretraining images under ``roots``, leaving out ``exclude`` hashes.

    Raises:
        DatasetError: as :func:`~sarfewshot.pretrain.data.find_unlabelled_images`.
    """
    from sarfewshot.pretrain.data import shard_root

    exclude = exclude or set()
    folder = shard_root(roots)
    if folder is not None:
        data = _collect_shards(folder, exclude)
    else:
        data = _collect_folders(roots, memo_dir, exclude)
    data.roots = [str(r) for r in roots]
    data.excluded.update(held_out=len(exclude), specs=list(specs))
    return data


def _collect_folders(roots: Sequence[str], memo_dir: Path, exclude: set[str]) -> PretrainData:
    from sarfewshot.data.fingerprint import content_hashes
    from sarfewshot.pretrain.data import find_unlabelled_images

    found = find_unlabelled_images(roots)
    bases = [Path(r).expanduser() for r in roots]
    memo_dir.mkdir(parents=True, exist_ok=True)
    digests = content_hashes(found, memo_dir / MEMO_NAME)
    lines, files, hashes = [], [], []
    dropped = 0
    for path, digest in zip(found, digests):
        if digest in exclude:
            dropped += 1
            continue
        i = next(k for k, base in enumerate(bases) if path.is_relative_to(base))
        rel = path.relative_to(bases[i]).as_posix()
        lines.append(f"{i}\t{rel}\t{os.path.getsize(path)}\t{digest}")
        files.append(path)
        hashes.append(digest)
    fingerprint = sha256_text("\n".join(["folders", *lines]))
    return PretrainData("folders", [], fingerprint, len(files), files, None, hashes,
                        {"count": dropped})  # fmt: skip


def _collect_shards(folder: Path, exclude: set[str]) -> PretrainData:
    from sarfewshot.data.shards import INDEX_NAME, read_index, source_hashes

    count = read_index(folder).count
    per_sample = source_hashes(folder)
    keep = list(range(count))
    if exclude:
        if per_sample is None:
            from sarfewshot.errors import ConfigError

            raise ConfigError(
                f"--exclude-split: the shards in {folder} were packed without source hashes; "
                "pack them again with this version (sarfewshot data pack) to exclude by content"
            )
        keep = [k for k, h in enumerate(per_sample) if h not in exclude]
    index_sha = sha256_text((folder / INDEX_NAME).read_text(encoding="utf-8"))
    kept_sha = sha256_text(json.dumps(keep)) if len(keep) != count else "all"
    hashes = None if per_sample is None else [per_sample[k] for k in keep]
    fingerprint = sha256_text(f"shards\n{index_sha}\n{kept_sha}")
    return PretrainData("shards", [], fingerprint, len(keep), [], keep, hashes,
                        {"count": count - len(keep)})  # fmt: skip
