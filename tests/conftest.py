"""Shared fixtures: the location of ``../shared`` (real MSTAR data, reference vectors).

Real-data tests skip with a message when ``../shared`` (relative to the repository root) is
absent; they never copy the data into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"

os.environ.setdefault("SARFEWSHOT_NO_PROGRESS", "1")


def check_torchvision_build() -> None:
    """Stop the session with one line when torch and torchvision are mismatched builds.

    Test modules import timm and torchgeo, which import torchvision; a mismatched pair raises a
    RuntimeError that ``importorskip`` does not catch, and collection would end with 0 tests.
    """
    from sarfewshot.utils.torch_builds import torchvision_problem

    problem = torchvision_problem()
    if problem is not None:
        raise pytest.UsageError(problem)


def pytest_configure(config: pytest.Config) -> None:
    """Check the torch/torchvision pair before any test module is collected."""
    check_torchvision_build()


@pytest.fixture
def private_tmpdir(tmp_path, monkeypatch) -> Path:
    """A TMPDIR of the test's own for the processes it starts.

    torchrun's agent writes a log folder, ``torchelastic_*``, under TMPDIR and never removes it;
    without this every run of the distributed tests would leave some in /tmp.
    """
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp


def elastic_folders(folder: Path) -> list[Path]:
    """The ``torchelastic_*`` log folders torchrun left in ``folder``."""
    return sorted(folder.glob("torchelastic_*"))


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at ../shared ({path}); real-data test skipped")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (skip when absent)."""
    return _require(SHARED, "shared folder")


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """``../shared/vectors``: numbers computed with the original SAR-JEPA code."""
    return _require(SHARED / "vectors", "reference vectors")


@pytest.fixture(scope="session")
def mstar_soc_root() -> Path:
    """``../shared/data``, the folder holding ``MSTAR_SOC/TRAIN|TEST``."""
    return _require(SHARED / "data" / "MSTAR_SOC", "MSTAR SOC chips").parent


@pytest.fixture(scope="session")
def mstar_raw_root() -> Path:
    """``../shared/data/mstar_raw``: six raw MSTAR Phoenix files."""
    return _require(SHARED / "data" / "mstar_raw", "raw MSTAR files")
