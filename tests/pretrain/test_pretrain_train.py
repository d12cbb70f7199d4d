"""The pretraining loop: checkpoint format, exact resume, the schedule, the config, DDP."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sarfewshot.errors import ConfigError, DatasetError
from sarfewshot.pretrain.config import setup_pretrain_cfg
from sarfewshot.pretrain.train import (
    CHECKPOINT_LAST,
    LOG_NAME,
    Schedule,
    capture_rng,
    pretrain,
    restore_rng,
)
from tests.pretrain.synthetic_sar import write_chips

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("chips")
    write_chips(folder, n=8, size=72)
    return folder


def _run(chips: Path, out: Path, max_steps: int, resume: bool = False, **kw) -> Path:
    opts = ["DATA.BATCH_SIZE", "4", "TRAIN.LOG_EVERY", "1", "OPTIM.EPOCHS", "4"]
    return pretrain(
        config="sarjepa_tiny", data=[chips], output=out, max_steps=max_steps, resume=resume,
        opts=opts + list(kw.pop("opts", [])), **kw,
    )  # fmt: skip


def _load(path: Path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / LOG_NAME).read_text().splitlines()]


def test_resume_continues_exactly(chips, tmp_path):
    # 8 images, batch 4: 2 steps per epoch; stopping at step 3 interrupts epoch 1 mid-way
    straight = _run(chips, tmp_path / "a", 6)
    _run(chips, tmp_path / "b", 3)
    resumed = _run(chips, tmp_path / "b", 6, resume=True)
    a, b = _load(straight), _load(resumed)
    assert a["resume"]["step"] == b["resume"]["step"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert len(_losses(tmp_path / "a")) == 6


def test_checkpoint_format_and_backbone_loading(chips, tmp_path):
    out = tmp_path / "run"
    last = _run(chips, out, 4, opts=["TRAIN.SAVE_EVERY", "1"])
    assert last == out / CHECKPOINT_LAST
    names = sorted(p.name for p in out.glob("checkpoint-*.pth"))
    assert names == ["checkpoint-0.pth", "checkpoint-1.pth", CHECKPOINT_LAST]
    ckpt = _load(out / "checkpoint-1.pth")
    assert {"model", "optimizer", "epoch", "scaler", "args"} <= set(ckpt)
    assert ckpt["epoch"] == 1 and isinstance(ckpt["args"], argparse.Namespace)
    assert ckpt["args"].input_size == 64 and ckpt["args"].mask_ratio == pytest.approx(0.8)
    keys = set(ckpt["model"])
    assert {"cls_token", "mask_token", "patch_embed.proj.weight", "norm.weight"} <= keys
    assert "blocks.1.attn.rpe_k.lookup_table_weight" in keys
    assert "decoder_blocks.0.attn.rpe_k.lookup_table_weight" in keys
    assert ckpt["model"]["decoder_pred.weight"].shape == (256, 32)  # 4 radii x 8 x 8
    assert not any(k.startswith("module.") for k in keys)
    log = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    assert set(log[0]) == {"step", "epoch", "loss", "lr", "img_s", "target_var"}

    from sarfewshot.models.registry import build_backbone

    net = build_backbone("sarjepa", weights=last, img_size=64).eval()
    assert net.backbone_info["arch"] == "irpe:patch=8,dim=64,depth=2,heads=2" == ckpt["args"].arch
    with torch.no_grad():
        feats = net.forward_features(torch.rand(2, 1, 64, 64))
    assert feats.shape == (2, 64) and torch.isfinite(feats).all()


def test_schedule_warmup_then_half_cosine():
    s = Schedule(lr=1.0, min_lr=0.1, warmup=4, total=14)
    assert s.at(0) == 0.0 and s.at(2) == pytest.approx(0.5)
    assert s.at(4) == pytest.approx(1.0)
    assert s.at(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s.at(14) == pytest.approx(0.1)


def test_release_lr_rule_and_defaults():
    cfg = setup_pretrain_cfg(REPO / "configs" / "pretrain" / "sarjepa_vit_b16.yaml")
    from sarfewshot.pretrain.train import absolute_lr

    assert absolute_lr(cfg, 300) == pytest.approx(1e-3 * 300 / 256)
    assert tuple(cfg.OPTIM.BETAS) == (0.9, 0.95) and cfg.OPTIM.WEIGHT_DECAY == 0.05
    assert (cfg.OPTIM.WARMUP_EPOCHS, cfg.OPTIM.EPOCHS, cfg.DATA.BATCH_SIZE) == (20, 300, 75)


def test_rng_states_round_trip_through_weights_only(tmp_path):
    state = capture_rng()
    torch.save(state, tmp_path / "rng.pth")
    expected = torch.rand(3)
    restore_rng(torch.load(tmp_path / "rng.pth", weights_only=True))
    assert torch.equal(torch.rand(3), expected)


def test_config_errors_name_key_and_source(tmp_path, chips):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  NOT_A_KEY: 3\n")
    with pytest.raises(ConfigError, match=r"MODEL\.NOT_A_KEY.*bad\.yaml"):
        setup_pretrain_cfg(bad)
    with pytest.raises(ConfigError, match="OPTIM.NOPE"):
        setup_pretrain_cfg(opts=["OPTIM.NOPE", "1"])
    with pytest.raises(ConfigError, match="PATCH_SIZE"):
        setup_pretrain_cfg(opts=["INPUT.SIZE", "100"])
    with pytest.raises(DatasetError, match="batch"):
        _run(chips, tmp_path / "o", 1, opts=["DATA.BATCH_SIZE", "16"])
    with pytest.raises(ConfigError, match="no such checkpoint"):
        _run(chips, tmp_path / "o", 1, resume=str(tmp_path / "missing.pth"))


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(chips, tmp_path):
    """DDP with the Gloo backend: two CPU processes train and rank 0 writes the checkpoint."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "sarfewshot", "pretrain", "--config", "sarjepa_tiny", "--data", str(chips),
        "--output", str(out), "--max-steps", "2", "--batch-size", "2",
        "OPTIM.EPOCHS", "2", "TRAIN.LOG_EVERY", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        start_new_session=True,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its two workers
        proc.communicate()
        pytest.fail("torchrun did not finish within 180 s")
    assert proc.returncode == 0, err[-2000:]
    ckpt = _load(out / CHECKPOINT_LAST)
    assert ckpt["args"].world_size == 2 and ckpt["resume"]["step"] == 2
    assert len(_losses(out)) == 2
