"""Dataset fingerprints: listing, sizes and content hashes, remembered between runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sarfewshot.data import fingerprint as fp
from sarfewshot.data.build import build_listing


def _tree(root: Path) -> Path:
    from PIL import Image

    for split, n in (("train", 3), ("test", 2)):
        for c, cls in enumerate(("a", "b")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("L", (4, 4), color=10 * i + c).save(folder / f"{i}.png")
    return root


def _listing(root: Path):
    return build_listing("folder", str(root))[1]


@pytest.fixture
def tree(tmp_path) -> Path:
    return _tree(tmp_path / "data")


def test_copies_agree_and_every_change_is_seen(tree, tmp_path):
    listing = _listing(tree)
    base = fp.dataset_fingerprint(listing)
    assert base.method == "content" and base.files == 10
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)  # new mtimes, another root: the same version
    assert fp.dataset_fingerprint(build_listing("folder", str(copy))[1]) == base
    # in place, same name and size, other bytes
    chip = next(copy.rglob("*.png"))
    chip.write_bytes(chip.read_bytes()[:-1] + b"\x00")
    changed = fp.dataset_fingerprint(build_listing("folder", str(copy))[1])
    assert changed.sha256 != base.sha256
    (copy / "test" / "a" / "0.png").unlink()
    removed = fp.dataset_fingerprint(build_listing("folder", str(copy))[1])
    assert len({base.sha256, changed.sha256, removed.sha256}) == 3


def test_the_memo_saves_rehashing_until_a_file_changes(tree, tmp_path, monkeypatch):
    listing = _listing(tree)
    memo = tmp_path / "memo" / "folder.json"
    calls = []
    real = fp.sha256_file
    monkeypatch.setattr(fp, "sha256_file", lambda p: calls.append(p) or real(p))
    first = fp.dataset_fingerprint(listing, memo)
    assert len(calls) == 10 and memo.is_file()
    assert fp.dataset_fingerprint(listing, memo) == first and len(calls) == 10
    chip = tree / listing.train[0].impath
    chip.write_bytes(chip.read_bytes() + b"x")
    assert fp.dataset_fingerprint(listing, memo) != first
    assert calls[10:] == [str(chip)]


def test_large_folders_fall_back_to_size_and_mtime(tree, monkeypatch):
    listing = _listing(tree)
    monkeypatch.setenv("SARFEWSHOT_HASH_LIMIT", "10")
    stat = fp.dataset_fingerprint(listing)
    assert stat.method == "stat"
    chip = tree / listing.test[0].impath
    os.utime(chip, ns=(1, 1))
    assert fp.dataset_fingerprint(listing).sha256 != stat.sha256
