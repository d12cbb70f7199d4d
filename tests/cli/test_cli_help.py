"""Every ``--help`` page: each subcommand and flag described, plain text, wrapped."""

from __future__ import annotations

import argparse
import re

import pytest

from sarfewshot.cli.main import build_parser, iter_parsers, main

REST = re.compile(r"``|:(?:func|class|mod|meth|attr|data|ref):`")
WIDTH = 100


@pytest.fixture
def parsers(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    return list(iter_parsers(build_parser()))


def test_every_subcommand_has_help_and_description(parsers):
    for parser in parsers:
        assert parser.description, f"{parser.prog}: no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                described = {a.dest: a.help for a in action._choices_actions}
                for name in action.choices:
                    assert described.get(name), f"{parser.prog} {name}: no help line"


def test_every_flag_has_help(parsers):
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (
                f"{parser.prog} {'/'.join(action.option_strings) or action.dest}: no help"
            )


def test_rendered_help_is_plain_and_wrapped(parsers):
    for parser in parsers:
        text = parser.format_help()
        assert "%%" not in text, f"{parser.prog}: literal %%"
        assert not REST.search(text), f"{parser.prog}: reST markup"
        long = [line for line in text.splitlines() if len(line) > WIDTH]
        assert not long, f"{parser.prog}: unwrapped lines {long}"


def test_examples_keep_their_layout(parsers):
    text = next(p for p in parsers if p.prog.endswith(" eval")).format_help()
    assert "\n  sarfewshot eval --backbone sarjepa --weights sarjepa.pth" in text


def test_list_methods_is_plain_text(capsys):
    assert main(["pretrain", "--list-methods"]) == 0
    out = capsys.readouterr().out
    assert "lomar_sar" in out and "TARGET.NORM_PIX" in out
    assert not REST.search(out)


def test_eval_help_shows_the_img_size_default(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--img-size PX" in text and "default: 224" in text
    assert "--threads N" in text
