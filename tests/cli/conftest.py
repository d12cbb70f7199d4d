"""Shared fixtures of the CLI tests: a tiny synthetic SAR tree that tiny grids run on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sarfewshot.datasets.synthetic import generate_synthetic

# A micro iRPE ViT at 32 px, no crop, 2 epochs: grids that finish in seconds on a CPU.
TINY = ["--backbone", "random", "--arch", "irpe_vit_micro_patch8", "--img-size", "32"]
TAIL = ["INPUT.SAR.CROP", "0", "OPTIM.MAX_EPOCH", "2"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """6 train and 3 test chips per class of the synthetic dataset, 64 px."""
    out = tmp_path_factory.mktemp("synth")
    return generate_synthetic(
        out, n_train_per_class=6, n_test_per_class=3, size=64, progress_bar=False
    )


def script_env(**extra: str) -> dict:
    """The environment a board script runs in: this interpreter (PY, SFS, PATH), no bars."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PY": sys.executable,
        "SFS": f"{sys.executable} -m sarfewshot",
        "SARFEWSHOT_NO_PROGRESS": "1",
        **extra,
    }
