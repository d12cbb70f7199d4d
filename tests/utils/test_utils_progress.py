"""Heartbeat lines: a steady interval when output is redirected, silence on a terminal."""

from __future__ import annotations

import io

from sarfewshot.utils import progress


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_the_interval_with_an_estimate(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    lines: list[str] = []
    beat = progress.Heartbeat("pretrain", 100, interval=30, enabled=True, printer=lines.append)
    clock.now += 10
    beat.update(10)
    assert lines == []  # not yet 30 s
    clock.now += 20
    beat.update(30, "loss 0.41")
    assert lines == ["[pretrain] step 30/100 (30%), 30s elapsed, ~1m10s left, loss 0.41"]
    beat.update(31)
    assert len(lines) == 1


def test_terminals_and_no_progress_silence_heartbeats(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("SARFEWSHOT_NO_PROGRESS", raising=False)
    assert not progress.heartbeat_wanted(Tty())
    assert progress.heartbeat_wanted(io.StringIO())
    monkeypatch.setenv("SARFEWSHOT_NO_PROGRESS", "1")
    assert not progress.heartbeat_wanted(io.StringIO())


def test_heartbeat_iter_reports_batches(monkeypatch):
    monkeypatch.delenv("SARFEWSHOT_NO_PROGRESS", raising=False)
    monkeypatch.setenv("SARFEWSHOT_PROGRESS_INTERVAL", "0")
    out = io.StringIO()
    monkeypatch.setattr(progress.sys, "stdout", out)
    assert list(progress.heartbeat_iter(range(3), "features")) == [0, 1, 2]
    assert out.getvalue().splitlines()[-1].startswith("[features] batch 3/3 (100%)")
