"""Atomic writes: readable by the lab (umask), and errors that name the path."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from sarfewshot.errors import OutputError
from sarfewshot.utils import io


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_honour_the_umask(tmp_path, umask_022):
    io.atomic_write_text(tmp_path / "a.txt", "x")
    io.atomic_write_json(tmp_path / "b.json", {"a": 1})
    assert _mode(tmp_path / "a.txt") == _mode(tmp_path / "b.json") == 0o644
    os.umask(0o077)
    io.atomic_write_text(tmp_path / "private.txt", "x")
    assert _mode(tmp_path / "private.txt") == 0o600


def test_a_file_in_the_way_names_the_path(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(OutputError, match=r"cannot write .*out.*Not a directory"):
        io.atomic_write_text(tmp_path / "out" / "records" / "r.json", "{}")


def test_a_full_disk_names_the_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", full)
    target = tmp_path / "leaderboard.csv"
    with pytest.raises(OutputError, match=r"cannot write .*leaderboard.csv: No space left"):
        io.atomic_write_text(target, "x")
    assert list(tmp_path.iterdir()) == []
