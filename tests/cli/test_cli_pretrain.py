"""`sarfewshot pretrain`: flags, trailing KEY VALUE overrides, resume, errors as one line."""

from __future__ import annotations

import json
import shlex

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


def _tiny_args(tmp_path):
    data = tmp_path / "chips"
    write_chips(data, n=4, size=64)
    out = tmp_path / "run"
    return out, ["pretrain", "--config", "sarjepa_tiny", "--data", str(data), "--output",
                 str(out), "--batch-size", "2", "--seed", "0"]  # fmt: skip


def test_pretrain_cli_refuses_an_existing_checkpoint(tmp_path, capsys):
    out, base = _tiny_args(tmp_path)
    assert main([*base, "--max-steps", "1"]) == 0
    capsys.readouterr()
    assert main([*base, "--max-steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert str(out / "checkpoint-last.pth") in err and "step 1" in err
    assert "--resume" in err and "--overwrite" in err
    assert main([*base, "--max-steps", "2", "--overwrite", "TRAIN.LOG_EVERY", "1"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def _interrupt_first_step(monkeypatch):
    import sarfewshot.pretrain.train as train_mod

    real = train_mod.forward_backward

    def forward_backward(run, images, micro, *rest):
        if run.pos.step == 1:
            raise KeyboardInterrupt
        return real(run, images, micro, *rest)

    monkeypatch.setattr(train_mod, "forward_backward", forward_backward)


def test_pretrain_cli_ctrl_c_prints_the_command_that_continues(tmp_path, capsys, monkeypatch):
    out, base = _tiny_args(tmp_path)
    assert main([*base, "--max-steps", "1"]) == 0
    capsys.readouterr()
    _interrupt_first_step(monkeypatch)
    # --overwrite and --resume-from would lose the saved step: the hint drops them
    args = [*base, "--overwrite", "--max-steps", "3", "TRAIN.LOG_EVERY", "1"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"interrupted at step 1: saved {out / 'checkpoint-last.pth'}" in err
    hint = err.split("continue with:\n", 1)[1].strip()
    expected = [*base, "--max-steps", "3", "--resume", "TRAIN.LOG_EVERY", "1"]
    assert shlex.split(hint) == ["sarfewshot", *expected]
    # a command that already resumed gets --resume once, in place of --resume-from
    extra = ["--resume-from", str(out / "checkpoint-last.pth"), "TRAIN.LOG_EVERY", "1"]
    assert main([*base, "--resume", "--max-steps", "3", *extra]) == 130
    hint = capsys.readouterr().err.split("continue with:\n", 1)[1].strip()
    assert shlex.split(hint).count("--resume") == 1 and "--resume-from" not in hint
    monkeypatch.undo()
    # the printed command continues the run to its end, each step logged once
    assert main(shlex.split(hint)[1:]) == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
