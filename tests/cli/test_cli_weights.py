"""``weights fetch``: the reason it cannot download names the real cause."""

from __future__ import annotations

import sys

from sarfewshot.cli.main import main


def test_a_name_without_an_hf_file_says_so_not_pip_install(capsys):
    assert main(["weights", "fetch", "sarjepa"]) == 2
    err = capsys.readouterr().err
    assert "no source is a single Hugging Face file" in err
    assert "pip install" not in err  # huggingface_hub being installed or not is beside the point
    assert "kaggle.com/models/liweijie19/sar-jepa" in err


def test_a_missing_client_is_named_when_an_hf_file_exists(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    assert main(["weights", "fetch", "sarmae"]) == 2
    assert "pip install 'sarfewshot[hub]'" in capsys.readouterr().err
