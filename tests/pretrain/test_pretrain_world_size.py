"""Same numbers on one process or many: per-sample keyed draws, equal weights across launches."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sarfewshot.pretrain.masking import local_window_masks, random_masks
from sarfewshot.pretrain.train import CHECKPOINT_LAST, load_checkpoint, mask_generators, pretrain
from tests.conftest import elastic_folders
from tests.pretrain.synthetic_sar import write_chips

REPO = Path(__file__).resolve().parents[2]
COMMON = ["--config", "sarjepa_tiny", "--max-steps", "3", "--seed", "7",
          "OPTIM.EPOCHS", "2", "TRAIN.TENSORBOARD", "False"]  # fmt: skip


def test_an_images_masks_do_not_depend_on_its_batch():
    whole = local_window_masks(4, 8, 4, 4, 0.8, mask_generators(7, 1, [10, 11, 12, 13]))
    half = local_window_masks(2, 8, 4, 4, 0.8, mask_generators(7, 1, [12, 13]))
    assert torch.equal(whole.index[2:], half.index) and torch.equal(whole.mask[2:], half.mask)
    other_epoch = local_window_masks(2, 8, 4, 4, 0.8, mask_generators(7, 2, [12, 13]))
    assert not torch.equal(other_epoch.index, half.index)
    a = random_masks(3, 64, 0.75, mask_generators(0, 0, [5, 6, 9])).mask
    assert torch.equal(a[1:2], random_masks(1, 64, 0.75, mask_generators(0, 0, [6])).mask)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cmds: list[list[str]], timeout: float = 300) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            c,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )  # fmt: skip
        for c in cmds
    ]
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)  # the launcher and its workers
            p.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s")
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]


def _torchrun(*launcher: str, chips: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "sarfewshot",
        "pretrain", "--data", str(chips), "--output", str(out), "--batch-size", "2", *COMMON,
    ]  # fmt: skip


def test_one_process_two_nodes_and_two_processes_end_with_equal_weights(tmp_path, private_tmpdir):
    chips = tmp_path / "chips"
    write_chips(chips, n=8, size=72)
    one = pretrain(
        config="sarjepa_tiny", data=[chips], output=tmp_path / "one", batch_size=4,
        max_steps=3, seed=7, opts=["OPTIM.EPOCHS", "2", "TRAIN.TENSORBOARD", "False"],
    )  # fmt: skip
    port = _free_port()
    node = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "sfs-test"]  # fmt: skip
    nodes = tmp_path / "nodes"
    _launch([_torchrun(*node, chips=chips, out=nodes)] * 2)
    procs = tmp_path / "procs"
    _launch([_torchrun("--standalone", "--nproc-per-node", "2", chips=chips, out=procs)])
    # three torchrun agents, three log folders: in the test's TMPDIR, none left in /tmp
    assert len(elastic_folders(private_tmpdir)) == 3
    ref = load_checkpoint(one)["model"]
    for out in (nodes, procs):
        ckpt = load_checkpoint(out / CHECKPOINT_LAST)
        assert ckpt["resume"]["world_size"] == 2 and ckpt["resume"]["step"] == 3
        for key, value in ckpt["model"].items():
            torch.testing.assert_close(value, ref[key], rtol=0, atol=1e-5, msg=key)
    # the weights moved: equality is not the initialisation's
    init = pretrain(
        config="sarjepa_tiny", data=[chips], output=tmp_path / "zero", batch_size=4,
        max_steps=1, seed=7, opts=["OPTIM.EPOCHS", "2", "TRAIN.TENSORBOARD", "False"],
    )  # fmt: skip
    moved = load_checkpoint(init)["model"]
    assert any(not torch.allclose(moved[k], ref[k], atol=1e-5) for k in ref)
