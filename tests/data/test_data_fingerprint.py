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
    monkeypatch.setattr(fp, "RACY_NS", 0)  # the tree was just written: remember it anyway
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


def _rewrite_keeping_size_and_mtime(chip: Path) -> None:
    """Change one byte in place, then set the modification time back (``touch -r``)."""
    before = chip.stat()
    data = bytearray(chip.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chip.write_bytes(bytes(data))
    os.utime(chip, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = chip.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.mark.realdata
def test_a_real_chip_rewritten_with_its_mtime_restored_is_caught(mstar_soc_root, tmp_path):
    root = tmp_path / "MSTAR_SOC"
    for split, cls in (("TRAIN", "BMP2"), ("TRAIN", "T72"), ("TEST", "BMP2"), ("TEST", "T72")):
        src = sorted((mstar_soc_root / "MSTAR_SOC" / split / cls).glob("*.jpeg"))[:3]
        (root / split / cls).mkdir(parents=True)
        for chip in src:
            shutil.copy2(chip, root / split / cls / chip.name)
    listing = build_listing("folder", str(root))[1]
    memo = tmp_path / "cache" / "fingerprints" / "folder.json"
    first = fp.dataset_fingerprint(listing, memo)
    assert first.files == 12 and first.method == "content"
    _rewrite_keeping_size_and_mtime(root / listing.test[0].impath)
    again = fp.dataset_fingerprint(listing, memo)
    assert again.sha256 != first.sha256
    assert again == fp.dataset_fingerprint(listing)  # the memo agrees with a fresh hash


@pytest.mark.parametrize("part", [1, 2, 3], ids=["mtime", "ctime", "inode"])
def test_each_part_of_the_memo_key_forces_a_rehash(tree, tmp_path, monkeypatch, part):
    """A memo entry whose size still matches but whose other key part differs is not reused."""
    import json

    monkeypatch.setattr(fp, "RACY_NS", 0)  # the tree was just written: remember it anyway
    listing = _listing(tree)
    memo = tmp_path / "memo.json"
    first = fp.dataset_fingerprint(listing, memo)
    doc = json.loads(memo.read_text())
    chip = str(tree / listing.train[0].impath)
    entry = doc["files"][chip]
    assert entry[:4] == fp.memo_key(os.stat(chip))
    entry[part] += 1  # only this part differs from the file on disk
    entry[4] = "0" * 64  # a stale hash that must not be reused
    memo.write_text(json.dumps(doc))
    calls = []
    real = fp.sha256_file
    monkeypatch.setattr(fp, "sha256_file", lambda p: calls.append(p) or real(p))
    assert fp.dataset_fingerprint(listing, memo) == first
    assert calls == [chip]


def test_a_memo_without_ctime_and_inode_is_not_trusted(tree, tmp_path, monkeypatch):
    """A version 1 memo (size and mtime only) is hashed again, not read."""
    import json

    monkeypatch.setattr(fp, "RACY_NS", 0)
    listing = _listing(tree)
    memo = tmp_path / "memo.json"
    first = fp.dataset_fingerprint(listing, memo)
    doc = json.loads(memo.read_text())
    old = {p: [e[0], e[1], "0" * 64] for p, e in doc["files"].items()}
    memo.write_text(json.dumps({"format": fp.MEMO_FORMAT, "files": old}))
    assert fp.dataset_fingerprint(listing, memo) == first


def test_large_folders_catch_a_rewrite_with_its_mtime_restored(tree, monkeypatch):
    listing = _listing(tree)
    monkeypatch.setenv("SARFEWSHOT_HASH_LIMIT", "10")
    stat = fp.dataset_fingerprint(listing)
    _rewrite_keeping_size_and_mtime(tree / listing.test[0].impath)
    assert fp.dataset_fingerprint(listing).sha256 != stat.sha256


def test_a_file_changed_within_the_racy_window_is_not_remembered(tree, tmp_path, monkeypatch):
    """File times advance in clock ticks: a just-written file is hashed again next time."""
    import json

    listing = _listing(tree)
    memo = tmp_path / "memo.json"
    fp.dataset_fingerprint(listing, memo)  # the tree was written a moment ago
    assert not memo.is_file()  # nothing worth remembering yet
    monkeypatch.setattr(fp, "RACY_NS", 0)
    fp.dataset_fingerprint(listing, memo)
    assert len(json.loads(memo.read_text())["files"]) == 10
