"""``--threads``: a number, or auto (the cores the load average leaves free)."""

from __future__ import annotations

import pytest
import torch

from sarfewshot.cli.main import build_parser
from sarfewshot.errors import ConfigError
from sarfewshot.utils import threads


@pytest.fixture
def no_omp(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_auto_uses_the_cores_the_load_leaves_free(no_omp):
    assert threads.choose_threads("auto", cores=2, load=0.1).threads == 2
    assert threads.choose_threads(None, cores=2, load=1.2).threads == 1
    assert threads.choose_threads("auto", cores=2, load=7.9).threads == 1  # never 0
    assert threads.choose_threads("auto", cores=16, load=4.0).threads == 12


def test_a_number_wins_and_omp_is_respected(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads("auto", cores=8, load=0.0).threads == 3
    assert threads.choose_threads("2", cores=8, load=0.0).threads == 2


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_bad_values_name_the_flag(bad):
    with pytest.raises(ConfigError, match="--threads"):
        threads.choose_threads(bad)


def test_apply_sets_torch_threads_and_says_why(no_omp, monkeypatch, capsys):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (3.0, 1.0, 1.0))
    try:
        assert threads.apply_threads("auto").threads == 1
        assert torch.get_num_threads() == 1
        assert "1 of 4 cores free at load average 3.0" in capsys.readouterr().out
        threads.apply_threads("2")
        assert torch.get_num_threads() == 2
        assert capsys.readouterr().out == ""  # an explicit choice needs no explanation
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command", ["eval", "pretrain", "demo"])
def test_eval_pretrain_and_demo_take_threads(command):
    parser = build_parser()
    extra = ["--backbone", "random", "--dataset", "synthetic", "--shots", "1"]
    args = parser.parse_args([command, *(extra if command == "eval" else []), "--threads", "1"])
    assert args.threads == "1"
    assert parser.parse_args([command, *(extra if command == "eval" else [])]).threads == "auto"
