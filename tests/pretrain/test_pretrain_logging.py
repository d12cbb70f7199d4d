"""Pretraining logs: TensorBoard event files and heartbeat lines when stdout is redirected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sarfewshot.pretrain.train import LOG_NAME, pretrain
from tests.pretrain.synthetic_sar import write_chips

REPO = Path(__file__).resolve().parents[2]
TAGS = ("loss", "lr", "target_var", "img_s", "grad_norm")


@pytest.fixture(scope="module")
def chips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("chips")
    write_chips(folder, n=8, size=72)
    return folder


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_pretraining_writes_tensorboard_scalars_matching_the_jsonl_log(chips, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    opts = ["DATA.BATCH_SIZE", "4", "TRAIN.LOG_EVERY", "1", "OPTIM.EPOCHS", "2"]
    pretrain(config="sarjepa_tiny", data=[chips], output=out, max_steps=3, opts=opts)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    scalars = _scalars(out / "tensorboard")
    assert {f"pretrain/{t}" for t in TAGS} <= set(scalars)
    lines = [json.loads(x) for x in (out / LOG_NAME).read_text().splitlines()]
    assert [s for s, _ in scalars["pretrain/loss"]] == [r["step"] for r in lines] == [1, 2, 3]
    for tag in ("loss", "grad_norm", "lr"):
        logged = [v for _, v in scalars[f"pretrain/{tag}"]]
        assert logged == pytest.approx([r[tag] for r in lines], rel=1e-6)
    assert all(r["grad_norm"] > 0 for r in lines)


def test_tensorboard_can_be_switched_off(chips, tmp_path):
    out = tmp_path / "run"
    opts = ["DATA.BATCH_SIZE", "4", "OPTIM.EPOCHS", "1", "TRAIN.TENSORBOARD", "False"]
    pretrain(config="sarjepa_tiny", data=[chips], output=out, max_steps=1, opts=opts)
    assert not (out / "tensorboard").exists()


def test_redirected_stdout_gets_heartbeat_lines_before_the_end(chips, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "sarfewshot", "pretrain", "--config", "sarjepa_tiny",
        "--data", str(chips), "--output", str(out), "--max-steps", "3", "--batch-size", "4",
        "OPTIM.EPOCHS", "2", "TRAIN.TENSORBOARD", "False",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SARFEWSHOT_NO_PROGRESS"}
    env.update(SARFEWSHOT_PROGRESS_INTERVAL="0", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    beats = [i for i, line in enumerate(lines) if line.startswith("[pretrain sarjepa] step ")]
    assert len(beats) >= 2, proc.stdout
    assert "step 1/3" in lines[beats[0]] and "loss" in lines[beats[0]]
    final = next(i for i, line in enumerate(lines) if line.startswith("final checkpoint:"))
    assert beats[0] < final
