"""One ``--device`` resolution for evaluation and pretraining."""

from __future__ import annotations

import pytest
import torch

from sarfewshot.errors import ConfigError
from sarfewshot.utils.device import resolve_device


def test_auto_and_explicit_devices():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("") == resolve_device(None) == torch.device(expected)
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert str(resolve_device("cpu")) == "cpu"  # the grid stores this name in records


def test_bad_values_name_the_flag(monkeypatch):
    with pytest.raises(ConfigError, match="--device 'tpu9' is not a torch device"):
        resolve_device("tpu9")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="--device cuda:1: CUDA is not available"):
        resolve_device("cuda:1")
    assert resolve_device("auto") == torch.device("cpu")


def test_bare_cuda_is_the_local_gpu_under_torchrun(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda:3")
    assert resolve_device("cuda:1", local_rank=3) == torch.device("cuda:1")  # explicit wins
    assert str(resolve_device("cuda")) == "cuda"  # no rank: the current device, as given
