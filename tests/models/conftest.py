"""Fixtures of the models tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def zoo(vectors_dir):
    """``../shared/vectors/zoo``: the zoo's reference checkpoints and features."""
    folder = vectors_dir / "zoo"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    return folder
