"""The release batch scripts drive `sarfewshot eval` with the release's grid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sarfewshot.datasets.synthetic import generate_synthetic
from sarfewshot.results.records import iter_records

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.slow
def test_release_linear_script_runs_its_protocol(tmp_path):
    root = generate_synthetic(tmp_path / "data", 6, 3, size=48, progress_bar=False)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DATASETS": "synthetic",
        "SHOTS": "1",
        "SEEDS": "1,2",
        "SARFEWSHOT_NO_PROGRESS": "1",
    }
    out = tmp_path / "runs"
    script = str(SCRIPTS / "run_release_linear.sh")
    tiny = ["--arch", "irpe_vit_micro_patch8", "--img-size", "32", "OPTIM.MAX_EPOCH", "1"]
    cmd = ["bash", script, "random", "", str(root), str(out), *tiny]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    cells = {(r["protocol"], r["shots"], r["seed"]) for r in iter_records([out])}
    assert cells == {("linear", 1, 1), ("linear", 1, 2)}


def test_release_script_usage_without_arguments():
    done = subprocess.run(["bash", str(SCRIPTS / "run_release_finetune.sh")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 2 and "usage" in done.stderr
