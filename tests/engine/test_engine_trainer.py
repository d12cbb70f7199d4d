"""TrainerX on a tiny separable problem: accuracy, determinism, checkpoints, anomalies, best_val."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sarfewshot.data.datamanager import DataManager
from sarfewshot.engine import protocol
from sarfewshot.engine.config import setup_cfg
from sarfewshot.engine.optim import build_lr_scheduler, build_optimizer
from sarfewshot.engine.trainer import NonFiniteLossError, TrainerX
from sarfewshot.errors import ConfigError, SarFewShotError
from sarfewshot.utils.seeding import torch_generator

CLASSES = ["p", "q", "r"]


@pytest.fixture(autouse=True)
def no_trainer_plugins(monkeypatch):
    """Keep these tests independent of the protocol plug-ins (tested in tests/trainers)."""
    monkeypatch.setattr("sarfewshot.engine.registry.list_trainers", lambda: [])


def _blobs(n_per_class: int, key: str, noise: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian blobs drawn as 1x4x4 'images' (separable, but not trivially)."""
    centers = torch.randn(3, 16, generator=torch_generator(0, "centers"))
    gen = torch_generator(0, key)
    labels = torch.arange(3).repeat_interleave(n_per_class)
    x = centers[labels] + noise * torch.randn(len(labels), 16, generator=gen)
    return x.reshape(-1, 1, 4, 4), labels


def _dm(cfg, with_val: bool = False) -> DataManager:
    xtr, ytr = _blobs(20, "train")
    xte, yte = _blobs(30, "test")
    val = _blobs(30, "val", noise=1.2) if with_val else (None, None)
    return DataManager.from_tensors(
        cfg, xtr, ytr, xte, yte, CLASSES, val_images=val[0], val_labels=val[1]
    )


def _cfg(tmp_path, *opts, seed=0, epochs=4):
    return setup_cfg(
        opts=[
            "OUTPUT_DIR", str(tmp_path), "SEED", str(seed), "USE_CUDA", "False",
            "VERBOSE", "False", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "16", "OPTIM.NAME", "sgd", "OPTIM.LR", "0.2",
            "OPTIM.MAX_EPOCH", str(epochs), "OPTIM.LR_SCHEDULER", "cosine",
            "OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant",
            "OPTIM.WARMUP_CONS_LR", "0.05", *opts,
        ]
    )  # fmt: skip


class ToyTrainer(TrainerX):
    """A linear classifier on flattened 4x4 inputs."""

    def build_model(self) -> None:
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(16, self.num_classes)).to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        return labels

    def forward_backward(self, batch: dict) -> dict[str, float]:
        x, y = self.parse_batch_train(batch)
        with self.autocast():
            out = self.model(x)
        loss = F.cross_entropy(out.float(), self.targets(y))
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "acc": 100.0 * (out.argmax(1) == y).float().mean().item()}


def _run(tmp_path, *opts, seed=0, epochs=4, cls=ToyTrainer, with_val=False, **options):
    cfg = _cfg(tmp_path, *opts, seed=seed, epochs=epochs)
    trainer = cls(cfg, _dm(cfg, with_val), **options)
    return trainer, trainer.train()


def test_trains_logs_and_checkpoints(tmp_path):
    trainer, acc = _run(tmp_path)
    assert acc > 90.0 and acc == trainer.last_result["accuracy"]
    assert trainer.last_result["split"] == "test" and trainer.last_result["total"] == 90
    assert len(trainer.last_result["confusion_matrix"]) == 3
    assert [h["epoch"] for h in trainer.history] == [1, 2, 3, 4]
    assert [h["lr"] for h in trainer.history][:2] == pytest.approx([0.05, 0.2])
    log = (tmp_path / "log.txt").read_text()
    assert log.index("Finish training") < log.index("* accuracy: ")
    assert "=> result\n* total: 90\n" in log
    # CHECKPOINT_FREQ 0: only the last epoch is saved (Dassl), plus the resume pointer.
    assert sorted(os.listdir(tmp_path / "model")) == ["checkpoint", "model.pth.tar-4"]


def test_same_seed_same_numbers_and_seed_zero_differs_from_one(tmp_path):
    runs = [_run(tmp_path / f"r{i}", seed=s) for i, s in enumerate((0, 0, 1))]
    losses = [[h["loss"] for h in t.history] for t, _ in runs]
    assert losses[0] == losses[1] and runs[0][1] == runs[1][1]
    assert losses[0] != losses[2]


def test_checkpoint_is_weights_only_and_reloads(tmp_path):
    trainer, acc = _run(tmp_path, write_log=False)
    path = tmp_path / "model" / "model.pth.tar-4"
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt) == {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}
    assert ckpt["epoch"] == 4 and ckpt["val_result"] is None
    assert ckpt["scheduler"] == {"last_epoch": 4, "base_lrs": [0.2]}
    cfg = _cfg(tmp_path, "VERBOSE", "True")
    fresh = ToyTrainer(cfg, _dm(cfg), write_log=False)
    fresh.load_model(str(tmp_path), epoch=4)  # val_result None must format
    assert fresh.test() == acc
    fresh.load_model(str(tmp_path))  # no best model: falls back to the latest checkpoint
    assert fresh.test() == acc


def test_resume_continues_schedule(tmp_path):
    def stop_after_two(summary):
        if summary["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "TRAIN.CHECKPOINT_FREQ", "1", callbacks=[stop_after_two])
    full, _ = _run(tmp_path / "full")
    resumed, acc = _run(tmp_path, "TRAIN.CHECKPOINT_FREQ", "1")
    assert resumed.start_epoch == 2 and [h["epoch"] for h in resumed.history] == [3, 4]
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in full.history[2:]]
    assert acc > 90.0


def test_non_finite_loss_is_detected(tmp_path):
    class Exploding(ToyTrainer):
        def forward_backward(self, batch):
            x, y = self.parse_batch_train(batch)
            loss = F.cross_entropy(self.model(x), y) * float("nan")
            self.model_backward_and_update(loss)
            return {"loss": loss.item()}

    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 1") as info:
        _run(tmp_path, cls=Exploding)
    assert isinstance(info.value, FloatingPointError)
    # Not a SarFewShotError: the grid stops on those, but records a non-finite cell and goes on.
    assert not isinstance(info.value, SarFewShotError)
    assert isinstance(info.value, protocol.NonFiniteLossError)


class Sabotaged(ToyTrainer):
    """Learns for two epochs, then is taught wrong labels, so its best val epoch is early."""

    def targets(self, labels):
        return (labels + 1) % self.num_classes if self.epoch >= 2 else labels


def test_best_val_restores_best_weights_in_memory(tmp_path):
    trainer, acc = _run(
        tmp_path,
        "TEST.FINAL_MODEL", "best_val",
        cls=Sabotaged, with_val=True, epochs=5, save_checkpoints=False, write_log=False,
    )  # fmt: skip
    vals = [h["val_accuracy"] for h in trainer.history]
    assert max(vals) > vals[-1] + 20  # sabotage worked: the last epoch is much worse
    assert trainer.best_result == max(vals)
    assert trainer.test("val") == max(vals)  # the deployed weights are the best epoch's
    assert acc > 80.0
    assert not tmp_path.exists() or os.listdir(tmp_path) == []  # grid mode writes nothing


def test_best_val_saves_best_checkpoint(tmp_path):
    trainer, _ = _run(tmp_path, "TEST.FINAL_MODEL", "best_val", cls=Sabotaged, with_val=True)
    ckpt = torch.load(tmp_path / "model" / "model-best.pth.tar", weights_only=True)
    assert ckpt["val_result"] == trainer.best_result
    with open(tmp_path / "model" / "checkpoint") as f:
        assert f.read().strip() == "model.pth.tar-4"  # resume pointer skips the best copy


def test_best_val_without_val_split_and_no_test(tmp_path):
    with pytest.raises(ConfigError, match="validation split"):
        _run(tmp_path, "TEST.FINAL_MODEL", "best_val")
    trainer, result = _run(tmp_path / "nt", "TEST.NO_TEST", "True", epochs=1)
    assert result is None and trainer.last_result is None


class _AutocastSpy:
    """Stands in for ``torch.autocast``: records the calls, or fails when entering is forbidden."""

    def __init__(self, forbid: bool) -> None:
        self.forbid, self.calls = forbid, []
        self.real = torch.autocast

    def __call__(self, device_type, *args, **kwargs):
        if self.forbid:
            raise AssertionError(f"autocast entered ({device_type})")
        self.calls.append((device_type, kwargs.get("dtype")))
        return self.real(device_type, *args, **kwargs)


def test_fp32_by_default_on_every_device(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, epochs=1)
    assert cfg.MODEL.PRECISION == "fp32"
    monkeypatch.setattr(torch, "autocast", _AutocastSpy(forbid=True))
    trainer, acc = _run(tmp_path, epochs=1)  # trains and tests without autocast
    assert trainer.precision == "fp32" and acc is not None
    trainer.device = torch.device("cuda")  # what a GPU run sees; the context is only built
    with trainer.autocast():
        pass


def test_bf16_is_opt_in_and_autocasts_on_the_trainers_device(tmp_path, monkeypatch):
    spy = _AutocastSpy(forbid=False)
    monkeypatch.setattr(torch, "autocast", spy)
    trainer, acc = _run(tmp_path, "MODEL.PRECISION", "bf16", epochs=1)
    assert trainer.precision == "bf16" and acc is not None
    assert spy.calls and set(spy.calls) == {("cpu", torch.bfloat16)}
    with pytest.raises(ConfigError, match="MODEL.PRECISION"):
        _cfg(tmp_path, "MODEL.PRECISION", "fp16")
