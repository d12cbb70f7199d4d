"""`sarfewshot pretrain`: flags, trailing KEY VALUE overrides, resume, errors as one line."""

from __future__ import annotations

import json

from sarfewshot.cli.main import main
from tests.pretrain.synthetic_sar import write_chips


def test_pretrain_cli_trains_and_resumes(tmp_path, capsys):
    data = tmp_path / "chips"
    write_chips(data, n=4, size=64)
    out = tmp_path / "run"
    base = ["pretrain", "--config", "sarjepa_tiny", "--data", str(data), "--output", str(out),
            "--batch-size", "2", "--seed", "0"]  # fmt: skip
    assert main([*base, "--max-steps", "1", "TRAIN.LOG_EVERY", "1"]) == 0
    assert (out / "checkpoint-last.pth").is_file()
    assert "final checkpoint" in capsys.readouterr().out
    assert main([*base, "--max-steps", "3", "--resume", "TRAIN.LOG_EVERY", "1"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert "METHOD: sarjepa" in (out / "config.yaml").read_text()


def test_pretrain_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["pretrain", "--config", "sarjepa_tiny", "--data", str(tmp_path / "none")]) == 2
    assert "pretraining data folder not found" in capsys.readouterr().err
    assert main(["pretrain", "--config", "sarjepa_tiny", "MODEL.WIDTH", "3"]) == 2
    assert "unknown config key MODEL.WIDTH" in capsys.readouterr().err
    assert main(["pretrain", "--config", "nope_tiny"]) == 2
    assert "--config nope_tiny" in capsys.readouterr().err


def test_pretrain_cli_lists_methods(capsys):
    assert main(["pretrain", "--list-methods"]) == 0
    out = capsys.readouterr().out
    assert "sarjepa " in out and "ijepa" in out and "mae" in out
