"""FLOPs per image from torch.utils.flop_counter, TFLOP/s in the log, MFU on a known GPU."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import sarfewshot.pretrain.flops as flops
from sarfewshot.pretrain.train import LOG_NAME, pretrain
from tests.pretrain.synthetic_sar import write_chips


class _Linear(nn.Module):
    """A model whose training FLOPs are known: one Linear on the flattened image."""

    def __init__(self, size: int, out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(size * size, out, bias=False)

    def forward(self, x, generator=None):
        return {"loss": self.fc(x.flatten(1)).square().mean()}


def test_counted_flops_are_forward_plus_backward_matmuls():
    # forward 2*N*K per image; backward: grad of the weight only (the input needs none): 2*N*K
    got = flops.count_train_flops(_Linear(8, 5), 8, torch.device("cpu"))
    assert got == 2 * (2 * 64 * 5)


def test_mfu_against_a_known_gpu_peak(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    dev = torch.device("cuda", 0)
    assert flops.mfu(135e9, 1300.0, dev) == pytest.approx(135e9 * 1300 / 989e12)
    assert "MFU 17.7 % of NVIDIA H200's 989 bf16 TFLOP/s" in flops.throughput_line(
        135e9, 1300.0, dev
    )
    assert flops.mfu(1e9, 1.0, torch.device("cpu")) is None


def test_pretrain_prints_tflops_counting_once_per_geometry(tmp_path, capsys, monkeypatch):
    write_chips(tmp_path / "chips", n=8, size=72)
    calls = []
    real = flops.count_train_flops
    monkeypatch.setattr(flops, "_CACHE", {})
    monkeypatch.setattr(flops, "count_train_flops", lambda *a: calls.append(1) or real(*a))
    opts = ["TRAIN.LOG_EVERY", "1", "OPTIM.EPOCHS", "2", "TRAIN.TENSORBOARD", "False"]
    for name in ("a", "b"):
        pretrain(config="sarjepa_tiny", data=[tmp_path / "chips"], output=tmp_path / name,
                 max_steps=2, batch_size=4, opts=opts)  # fmt: skip
    assert len(calls) == 1
    out = capsys.readouterr().out
    assert "GFLOP per image" in out and "TFLOP/s" in out.split("throughput:")[1]
    per_image = next(iter(flops._CACHE.values()))
    for line in (tmp_path / "a" / LOG_NAME).read_text().splitlines():
        rec = json.loads(line)
        assert rec["tflops"] == pytest.approx(per_image * rec["img_s"] / 1e12)
