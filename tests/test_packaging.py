"""Packaging: the plug-in folders install as ``sarfewshot.datasets`` / ``sarfewshot.trainers``.

A regular (non-editable) install is built as a wheel, unpacked into a temporary folder and
imported from a fresh interpreter whose working directory is outside the repository, so nothing
can leak in from the checkout. The wheel is built from a copy of the source tree in the
temporary folder, so setuptools' ``build/`` and ``*.egg-info`` never land in the checkout. The
editable install of the test environment is checked too.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import importlib.util, sys
import sarfewshot.datasets, sarfewshot.trainers, sarfewshot.configs
from sarfewshot.data.registry import list_datasets
from sarfewshot.engine.registry import list_trainers
from sarfewshot.configs import config_path
print(sarfewshot.datasets.__file__)
print(sarfewshot.trainers.__file__)
print(",".join(list_datasets()))
print(",".join(list_trainers()))
print(config_path("trainers", "linear", "vit_b16.yaml"))
spec = importlib.util.find_spec("trainers")
print(spec.origin if spec else "no-top-level-trainers")
"""


def _probe(env: dict, cwd: Path) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _check(lines: list[str], inside: Path) -> None:
    ds_file, tr_file, datasets, trainers, preset, top = lines
    assert Path(ds_file).resolve().is_relative_to(inside.resolve())
    assert Path(tr_file).resolve().is_relative_to(inside.resolve())
    assert {"mstar_soc", "fusar_ship", "sar_acd", "sample", "folder", "synthetic"} <= set(
        datasets.split(",")
    )
    assert {"finetune", "linear", "logreg", "knn", "prototype"} <= set(trainers.split(","))
    assert Path(preset).is_file()
    # No top-level `trainers` (or `datasets`) package is installed by sarfewshot.
    assert top == "no-top-level-trainers" or not Path(top).resolve().is_relative_to(REPO)


# what a source tree copy leaves out: environments, build outputs, run folders, VCS data
NOT_SOURCE = (".git", ".venv", "venv", ".ci-venv", "build", "dist", "*.egg-info", "__pycache__",
              ".pytest_cache", ".ruff_cache", "runs", "output", ".sarfewshot_cache",
              "sarfewshot-demo*", ".whl", ".gl")  # fmt: skip


def _build_outputs() -> set[str]:
    return {p.name for p in REPO.iterdir() if p.name == "build" or p.name.endswith(".egg-info")}


def copy_source_tree(dest: Path) -> Path:
    """A copy of the repository's sources to build from, outside the checkout."""
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(*NOT_SOURCE), symlinks=True)
    return dest


@pytest.mark.slow
def test_regular_install_from_wheel(tmp_path):
    before = _build_outputs()
    wheel_dir = tmp_path / "wheel"
    source = copy_source_tree(tmp_path / "src")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheel_dir), str(source)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert _build_outputs() == before, "building the wheel wrote into the checkout"
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip()[-300:]}")
    (wheel,) = wheel_dir.glob("sarfewshot-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    assert not any(n.startswith(("datasets/", "trainers/")) for n in names), "top-level plug-ins"
    assert "sarfewshot/results/templates/board.html.j2" in names, "the board's template"
    # PYTHONPATH comes before site-packages (and the editable finder), and the working
    # directory is outside the checkout, so the unpacked wheel is what gets imported.
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    _check(_probe(env, tmp_path), site)


def test_editable_install_maps_plugins():
    if importlib.util.find_spec("sarfewshot.datasets") is None:
        pytest.skip("sarfewshot is not installed in this environment")
    lines = _probe(dict(os.environ), REPO.parent)
    _check(lines, REPO)
