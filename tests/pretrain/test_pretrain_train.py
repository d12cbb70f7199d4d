"""The pretraining loop: checkpoint format, exact resume, the schedule, the config, DDP."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
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
from tests.conftest import elastic_folders
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


def test_training_time_is_summed_over_resumed_pieces(chips, tmp_path):
    out = tmp_path / "run"
    _run(chips, out, 3)
    first = _load(out / CHECKPOINT_LAST)["resume"]["elapsed"]
    assert first["cpu_s"] > 0 and first["wall_s"] > 0
    _run(chips, out, 6, resume=True)
    log = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    cpu = [r["cpu_s"] for r in log]
    assert cpu == sorted(cpu) and cpu[3] > round(first["cpu_s"], 3)  # carried, then grown
    assert _load(out / CHECKPOINT_LAST)["resume"]["elapsed"]["cpu_s"] >= cpu[-1]


def test_a_checkpoint_without_a_clock_resumes_from_zero(chips, tmp_path):
    out = tmp_path / "run"
    _run(chips, out, 3)
    ckpt = _load(out / CHECKPOINT_LAST)
    del ckpt["resume"]["elapsed"]  # as checkpoints written before the clock
    torch.save(ckpt, out / CHECKPOINT_LAST)
    _run(chips, out, 4, resume=True)
    log = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    # the resumed piece (1 step) counts from zero: below the first piece's 3 steps
    assert 0 < log[3]["cpu_s"] < log[2]["cpu_s"]


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
    fields = {"step", "epoch", "loss", "lr", "img_s", "target_var", "grad_norm", "tflops"}
    assert set(log[0]) == fields | {"wall_s", "cpu_s"}

    from sarfewshot.models.factory import build_backbone

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
def test_torchrun_two_processes_on_cpu(chips, tmp_path, private_tmpdir):
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
    assert len(elastic_folders(private_tmpdir)) == 1  # torchrun's log folder, not in /tmp


def _params(path: Path) -> dict:
    return _load(path)["model"]


def _assert_same_weights(a: Path, b: Path) -> None:
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    assert all(torch.equal(pa[k], pb[k]) for k in pa), "weights differ"


def _log_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / LOG_NAME).read_text().splitlines()]


def _interrupt_at(monkeypatch, step: int, micro: int = 0, how: str = "raise") -> None:
    """Ctrl-C at micro-batch ``micro`` of optimizer step ``step`` (0-based, before it runs).

    ``raise``: a KeyboardInterrupt out of the step (what an unhandled Ctrl-C does);
    ``signal``: a real SIGINT, which the loop turns into "finish this step, then stop".
    """
    import sarfewshot.pretrain.train as train_mod

    real = train_mod.forward_backward

    def forward_backward(run, images, m, *rest):
        if run.pos.step == step and m == micro and not getattr(run, "_hit", False):
            run._hit = True
            if how == "raise":
                raise KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)
        return real(run, images, m, *rest)

    monkeypatch.setattr(train_mod, "forward_backward", forward_backward)


def test_ctrl_c_mid_epoch_saves_the_current_step_and_resumes_exactly(chips, tmp_path, monkeypatch):
    from sarfewshot.pretrain.train import PretrainInterrupted

    # 8 images, batch 4: 2 steps per epoch; step 3 is the middle of epoch 1
    straight = _run(chips, tmp_path / "a", 6)
    _interrupt_at(monkeypatch, step=3)
    with pytest.raises(PretrainInterrupted) as info:
        _run(chips, tmp_path / "b", 6)
    monkeypatch.undo()
    assert info.value.step == 3 and info.value.checkpoint == tmp_path / "b" / CHECKPOINT_LAST
    state = _load(info.value.checkpoint)["resume"]
    assert (state["step"], state["epoch"], state["micro"]) == (3, 1, 1)
    assert _log_steps(tmp_path / "b") == [1, 2, 3]
    resumed = _run(chips, tmp_path / "b", 6, resume=True)
    _assert_same_weights(straight, resumed)
    assert _log_steps(tmp_path / "b") == [1, 2, 3, 4, 5, 6]
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")


def test_sigint_finishes_the_step_then_saves_with_accumulation(chips, tmp_path, monkeypatch):
    # batch 2 x 2 micro-batches: SIGINT during the second micro-batch of step 2 lets step 2
    # finish; the checkpoint holds step 3, mid-epoch 1 (micro 2 of 4)
    accum = ["DATA.BATCH_SIZE", "2", "OPTIM.ACCUM_ITER", "2"]
    straight = _run(chips, tmp_path / "a", 5, opts=accum)
    # a shell's background job inherits SIGINT ignored, which the trainer rightly keeps
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    _interrupt_at(monkeypatch, step=2, micro=1, how="signal")
    with pytest.raises(KeyboardInterrupt):
        _run(chips, tmp_path / "b", 5, opts=accum)
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    signal.signal(signal.SIGINT, previous)
    state = _load(tmp_path / "b" / CHECKPOINT_LAST)["resume"]
    assert (state["step"], state["epoch"], state["micro"]) == (3, 1, 2)
    resumed = _run(chips, tmp_path / "b", 5, resume=True, opts=accum)
    _assert_same_weights(straight, resumed)
    assert _log_steps(tmp_path / "b") == [1, 2, 3, 4, 5]


def test_raw_interrupt_mid_accumulation_redoes_the_step(chips, tmp_path, monkeypatch):
    accum = ["DATA.BATCH_SIZE", "2", "OPTIM.ACCUM_ITER", "2"]
    straight = _run(chips, tmp_path / "a", 5, opts=accum)
    _interrupt_at(monkeypatch, step=3, micro=1)  # one micro-batch of step 3 already done
    with pytest.raises(KeyboardInterrupt):
        _run(chips, tmp_path / "b", 5, opts=accum)
    monkeypatch.undo()
    state = _load(tmp_path / "b" / CHECKPOINT_LAST)["resume"]
    # steps 2 and 3 make epoch 1: step 3 starts over at the epoch's third micro-batch
    assert (state["step"], state["epoch"], state["micro"]) == (3, 1, 2)
    _assert_same_weights(straight, _run(chips, tmp_path / "b", 5, resume=True, opts=accum))


def test_existing_checkpoint_is_refused_unless_resume_or_overwrite(chips, tmp_path):
    out = tmp_path / "run"
    _run(chips, out, 2, opts=["TRAIN.SAVE_EVERY", "1"])
    last = out / CHECKPOINT_LAST
    before = last.read_bytes()
    pattern = rf"{re.escape(str(last))}.*step 2.*--resume.*--overwrite"
    with pytest.raises(ConfigError, match=pattern):
        _run(chips, out, 3)
    assert last.read_bytes() == before  # nothing was touched
    with pytest.raises(ConfigError, match="contradict"):
        _run(chips, out, 3, resume=True, overwrite=True)
    _run(chips, out, 1, overwrite=True)
    assert _load(last)["resume"]["step"] == 1
    assert _log_steps(out) == [1]  # the old run's log went with its checkpoints
    assert sorted(p.name for p in out.glob("checkpoint-*.pth")) == [CHECKPOINT_LAST]
    # a folder holding only an epoch checkpoint is protected too
    last.unlink()
    (out / "checkpoint-0.pth").write_bytes(before)
    with pytest.raises(ConfigError, match="checkpoint-0.pth.*step 2"):
        _run(chips, out, 1)


def test_resume_from_an_earlier_checkpoint_drops_later_log_lines(chips, tmp_path):
    out = tmp_path / "run"
    _run(chips, out, 4, opts=["TRAIN.SAVE_EVERY", "1"])  # checkpoint-0.pth holds step 2
    assert _log_steps(out) == [1, 2, 3, 4]
    _run(chips, out, 4, resume=str(out / "checkpoint-0.pth"))
    assert _log_steps(out) == [1, 2, 3, 4]
    # a fresh run next to the log of a run that saved no checkpoint starts a fresh log
    for ckpt in out.glob("checkpoint-*.pth"):
        ckpt.unlink()
    _run(chips, out, 1)
    assert _log_steps(out) == [1]
