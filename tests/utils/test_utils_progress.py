"""Heartbeat lines: a steady interval when output is redirected, silence on a terminal."""

from __future__ import annotations

import io

import pytest

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


def test_estimate_follows_the_recent_rate_not_the_average(monkeypatch):
    """1 step/s for 100 s, then the machine gets busy: 0.1 step/s."""
    clock = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    beat = progress.Heartbeat("pretrain", 300, interval=1e9, enabled=True, printer=print)
    start = clock.now
    for step in range(1, 101):
        clock.now += 1.0
        beat.update(step)
    for step in range(101, 131):
        clock.now += 10.0
        beat.update(step)
    elapsed = clock.now - start
    true_left = (300 - 130) * 10.0
    average_left = elapsed * (300 - 130) / 130
    recent_left = beat.seconds_left(130, elapsed)
    assert average_left < 0.35 * true_left  # the old estimate: far too optimistic
    assert abs(recent_left - true_left) < 0.1 * true_left
    assert f"~{progress.format_seconds(recent_left)} left" in beat.line(130, elapsed)


def test_recent_rate_does_not_depend_on_update_frequency():
    often, rarely = progress.RecentRate(window=60), progress.RecentRate(window=60)
    for t in range(0, 601):
        often.observe(2 * t, float(t))
    for t in range(0, 601, 50):
        rarely.observe(2 * t, float(t))
    assert often.rate == pytest.approx(2.0) and rarely.rate == pytest.approx(2.0)
    assert progress.RecentRate().seconds_left(10) is None  # no rate yet


@pytest.mark.parametrize(
    "value, off", [("", False), ("0", False), ("false", False), ("1", True), ("yes", True)]
)
def test_one_switch_for_every_bar(monkeypatch, value, off):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("SARFEWSHOT_NO_PROGRESS", value)
    assert progress.progress_enabled(stream=Tty()) is not off
    assert progress.heartbeat_wanted(io.StringIO()) is not off
    assert progress.progress_enabled(True) is True  # an explicit choice wins
    assert not progress.progress_enabled(stream=io.StringIO())  # no terminal, no bar


def test_every_reader_of_the_switch_is_the_one_function():
    from sarfewshot.data import listing
    from sarfewshot.engine import trainer
    from sarfewshot.engine.grid import progress as grid_progress

    assert trainer.progress_enabled is progress.progress_enabled
    assert grid_progress.progress_enabled is progress.progress_enabled
    assert listing.progress_enabled is progress.progress_enabled
    from sarfewshot.models import features
    from sarfewshot.pretrain import telemetry

    assert features.progress_enabled is progress.progress_enabled
    assert telemetry.progress_enabled is progress.progress_enabled


@pytest.mark.parametrize(
    "seconds, text",
    [(0.00004, "0.0 ms/ep"), (0.0004, "0.4 ms/ep"), (0.038, "38 ms/ep"), (2.14, "2.1 s/ep"),
     (185, "3m05s/ep"), (None, "? s/ep")],
)  # fmt: skip
def test_time_per_unit_is_readable_at_any_speed(seconds, text):
    assert progress.format_per_unit(seconds, "ep") == text


def test_the_epochs_bar_shows_time_per_epoch_not_a_huge_rate(capsys):
    from sarfewshot.engine.grid.progress import Bars

    bars = Bars(total=1, enabled=True)
    bars.start_cell("cell")
    for epoch in range(1, 51):  # sub-millisecond epochs
        bars.on_epoch(epoch, 50)
    text = bars.epochs.__str__()
    bars.end_cell()
    bars.close()
    capsys.readouterr()
    assert "ep/s" not in text and "ms/ep" in text and "50/50" in text
