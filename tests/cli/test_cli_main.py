"""The top-level CLI: subcommands listed, user errors as one line instead of a traceback."""

from __future__ import annotations

import pytest

from sarfewshot.cli import main as cli
from sarfewshot.errors import DatasetError, NonFiniteLossError


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in ("eval", "leaderboard", "compare", "pretrain", "data", "backbones", "demo",
                 "dassl-train"):  # fmt: skip
        assert name in out


@pytest.mark.parametrize(
    ("exc", "code"), [(DatasetError("root /x is missing"), 2), (NonFiniteLossError("nan"), 1)]
)
def test_errors_become_one_line(monkeypatch, capsys, exc, code):
    assert _main_raising(monkeypatch, exc) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(exc) in err and "Traceback" not in err


def _main_raising(monkeypatch, exc: BaseException) -> int:
    """``sarfewshot backbones`` with its command replaced by one that raises ``exc``."""

    def boom(args):
        raise exc

    parser = cli.build_parser()
    args = parser.parse_args(["backbones"])
    args.func = boom
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args))
    return cli.main(["backbones"])


class _Fixed:
    """A parser stand-in that returns prepared arguments."""

    def __init__(self, parser, args):
        self.parser, self.args = parser, args

    def parse_args(self, argv):
        return self.args

    def print_help(self):
        self.parser.print_help()


def _from_worker(exc: Exception) -> Exception:
    """``exc`` as a DataLoader worker re-raises it in the main process (torch's own wrapper)."""
    from torch._utils import ExceptionWrapper

    try:
        raise exc
    except type(exc):
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    try:
        wrapped.reraise()
    except type(exc) as again:
        return again
    raise AssertionError("not re-raised")


@pytest.mark.parametrize(
    "exc",
    [DatasetError("shard s/a.tar, sample 7.npy: bad CRC-32"), FileNotFoundError("s/a.idx gone")],
)
def test_errors_from_data_loading_workers_stay_one_line(monkeypatch, capsys, exc):
    """With --workers > 0 torch re-raises a worker's error with the worker's traceback in its
    message; the CLI prints the original line, not that traceback."""
    wrapped = _from_worker(exc)
    assert "Traceback" in str(wrapped)
    assert _main_raising(monkeypatch, wrapped) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {exc} (in a data-loading worker)"
        + (" (--debug shows the traceback)" if isinstance(exc, OSError) else "")
    ]
