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
    def boom(args):
        raise exc

    parser = cli.build_parser()
    args = parser.parse_args(["backbones"])
    args.func = boom
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args))
    assert cli.main(["backbones"]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(exc) in err and "Traceback" not in err


class _Fixed:
    """A parser stand-in that returns prepared arguments."""

    def __init__(self, parser, args):
        self.parser, self.args = parser, args

    def parse_args(self, argv):
        return self.args

    def print_help(self):
        self.parser.print_help()
