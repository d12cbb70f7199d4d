"""``sarfewshot eval`` from the command line: flags, the table, resume, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sarfewshot.cli.eval import per_backbone
from sarfewshot.cli.main import main
from sarfewshot.errors import ConfigError
from sarfewshot.results.records import record_files
from sarfewshot.utils.intlist import parse_ints
from tests.cli.conftest import TAIL, TINY


def _eval(root: Path, out: Path, *extra: str, tail=TAIL) -> list[str]:
    return [
        "eval",
        *TINY,
        "--dataset",
        "synthetic",
        "--root",
        str(root),
        "--output",
        str(out),
        *extra,
        *tail,
    ]


def test_eval_prints_the_table_writes_the_csv_and_resumes(root, tmp_path, capsys):
    out = tmp_path / "runs"
    args = _eval(
        root, out, "--shots", "1,2", "--protocol", "knn,prototype,logreg", "--seeds", "1-2"
    )
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "0 cells already done, 12 to run" in text
    assert "synthetic K=1" in text and "synthetic K=2" in text and "population std" in text
    assert (out / "leaderboard.csv").is_file() and len(record_files(out)) == 12
    assert main(args) == 0
    assert "12 cells already done, 0 to run" in capsys.readouterr().out
    assert main([*args[: -len(TAIL)], "--force", *TAIL]) == 0
    assert "0 cells already done, 12 to run" in capsys.readouterr().out
    # `sarfewshot leaderboard` recomputes exactly the CSV the grid wrote
    assert main(["leaderboard", str(out), "--csv", str(tmp_path / "again.csv")]) == 0
    assert (tmp_path / "again.csv").read_text() == (out / "leaderboard.csv").read_text()


def test_default_seeds_follow_the_release(root, tmp_path, capsys):
    args = _eval(root, tmp_path / "r", "--shots", "1", "--protocol", "linear", "--shard", "1/6")
    assert main(args) == 0
    # linear defaults to 6 seeds: shard 1/6 of them is one cell
    assert "0 cells already done, 1 to run" in capsys.readouterr().out


def test_no_feature_cache_gives_the_same_numbers(root, tmp_path, capsys):
    common = ("--shots", "2", "--protocol", "linear", "--seeds", "1")
    assert main(_eval(root, tmp_path / "a", *common)) == 0
    assert main(_eval(root, tmp_path / "b", *common, "--no-feature-cache")) == 0
    table_a, table_b = (tmp_path / "a" / "leaderboard.csv", tmp_path / "b" / "leaderboard.csv")
    assert table_a.read_text() == table_b.read_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--backbone", "nosuch"], "available"),
        (["--dataset", "nosuch"], "available: "),
        (["--dataset", "mstar"], "MSTAR"),  # wrong layout for the dataset
        (["--protocol", "nosuch"], "available: "),
        (["--shots", "50"], "larger than every class"),
        (["--shard", "3/2"], "--shard"),
        (["--seeds", "x"], "--seeds"),
        (["NOT.A_KEY", "1"], "NOT.A_KEY"),
        (["--weights", "missing.pth", "--backbone", "sarjepa", "--arch", ""], "missing.pth"),
    ],
)
def test_bad_input_is_one_clear_line(root, tmp_path, capsys, change, message):
    args = _eval(root, tmp_path / "r", "--shots", "1", "--protocol", "knn", "--seeds", "1", tail=[])
    flags = {a: i for i, a in enumerate(args) if a.startswith("--")}
    for flag, value in zip(change[0::2], change[1::2]):
        if flag in flags:
            args[flags[flag] + 1] = value
        else:
            args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_missing_root_and_unreadable_image_are_named(root, tmp_path, capsys):
    args = _eval(tmp_path / "nowhere", tmp_path / "r", "--shots", "1", "--protocol", "knn")
    args[args.index("--dataset") + 1] = "folder"
    assert main(args) == 2
    assert "nowhere" in capsys.readouterr().err
    bad = tmp_path / "tree"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            generate = bad / split / cls
            generate.mkdir(parents=True)
            (generate / "ok.png").write_bytes((root / "train/apc/apc_00000.png").read_bytes())
            (generate / "ok2.png").write_bytes((root / "train/bus/bus_00000.png").read_bytes())
    (bad / "test" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    args = _eval(bad, tmp_path / "r2", "--shots", "1", "--protocol", "knn", "--seeds", "1")
    args[args.index("--dataset") + 1] = "folder"
    assert main(args) == 2
    assert "broken.png" in capsys.readouterr().err


def test_flag_helpers():
    assert parse_ints("1,5, 10,5", "--shots") == [1, 5, 10]
    assert parse_ints("1-3,7", "--seeds") == [1, 2, 3, 7]
    with pytest.raises(ConfigError, match="--shots"):
        parse_ints("", "--shots")
    assert per_backbone(None, ["a", "b"], "--weights") == [None, None]
    assert per_backbone(",w.pth", ["a", "b"], "--weights") == [None, "w.pth"]
    assert per_backbone("b=w.pth", ["a", "b"], "--weights") == [None, "w.pth"]
    with pytest.raises(ConfigError, match="--weights"):
        per_backbone("w.pth", ["a", "b"], "--weights")
    with pytest.raises(ConfigError, match="--arch"):
        per_backbone("c=x", ["a", "b"], "--arch")


def test_exclude_seeds_use_the_same_parser_and_name_their_flag():
    from sarfewshot.pretrain.exclude import DEFAULT_SEEDS, parse_seeds

    assert parse_seeds("") == list(DEFAULT_SEEDS)
    assert parse_seeds("2-4,1") == parse_ints("2-4,1", "--seeds") == [2, 3, 4, 1]
    with pytest.raises(ConfigError, match="--exclude-seeds '3-1': the range 3-1 is reversed"):
        parse_seeds("3-1")
    with pytest.raises(ConfigError, match="--exclude-seeds '-1': -1 is negative"):
        parse_seeds("-1")


def test_slurm_array_task_runs_its_share(root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    args = _eval(root, tmp_path / "r", "--shots", "1,2", "--protocol", "knn", "--seeds", "1-3")
    assert main(args) == 0
    assert "0 cells already done, 2 to run" in capsys.readouterr().out  # 6 cells / 3 tasks


def test_two_processes_in_one_folder_leave_valid_records(root, tmp_path):
    import os
    import subprocess
    import sys

    from sarfewshot.results.records import read_record

    out = tmp_path / "shared"
    args = _eval(root, out, "--shots", "1,2", "--protocol", "knn,prototype", "--seeds", "1-2")
    cmd = [sys.executable, "-m", "sarfewshot", *args]
    env = {**os.environ, "SARFEWSHOT_NO_PROGRESS": "1"}
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1].decode()[-500:] for r in results]
    files = record_files(out)
    assert len(files) == 8 and all(read_record(f)["status"] == "ok" for f in files)
    assert not list((out / "records").glob(".*.tmp"))  # no temp files left behind


def test_per_backbone_takes_arch_specs_with_commas():
    spec = "irpe:patch=8,dim=128,depth=4,heads=4"
    assert per_backbone(spec, ["random"], "--arch") == [spec]
    assert per_backbone(f"random={spec}", ["random"], "--arch") == [spec]
    two = per_backbone(f"{spec};vit:patch=8,dim=192,depth=2", ["a", "b"], "--arch")
    assert two == [spec, "vit:patch=8,dim=192,depth=2"]
    assert per_backbone(f"b={spec}", ["a", "b"], "--arch") == [None, spec]


def test_table_shows_only_the_commands_cells(root, tmp_path, capsys):
    # records of another command in a nested folder (e.g. an old demo under runs/demo)
    out = tmp_path / "runs"
    assert main(_eval(root, out / "demo", "--shots", "1", "--protocol", "prototype")) == 0
    capsys.readouterr()
    argv = _eval(root, out, "--shots", "1,2", "--protocol", "knn", "--seeds", "1")
    assert main([*argv[: -len(TAIL)], "--shard", "1/2", *TAIL]) == 0
    first = capsys.readouterr().out
    assert "prototype" not in first and "other commands" in first
    assert "synthetic K=1" in first and "synthetic K=2" not in first
    # the second shard's table shows the whole command's cells (both shards), nothing else
    assert main([*argv[: -len(TAIL)], "--shard", "2/2", *TAIL]) == 0
    second = capsys.readouterr().out
    assert "synthetic K=1" in second and "synthetic K=2" in second
    assert "prototype" not in second
    # the folder's CSV and `sarfewshot leaderboard` keep everything
    assert "prototype" in (out / "leaderboard.csv").read_text()
    assert main(["leaderboard", str(out)]) == 0
    assert "prototype" in capsys.readouterr().out


def test_precision_flag_reaches_the_config(root, tmp_path, capsys):
    from sarfewshot.cli.eval import request_from_args
    from sarfewshot.cli.main import build_parser
    from sarfewshot.engine.grid.config import probe_cfg

    def cfg_of(*extra: str, tail=TAIL):
        argv = _eval(root, tmp_path, "--shots", "1", *extra, tail=tail)
        return probe_cfg(request_from_args(build_parser().parse_args(argv)))

    assert cfg_of().MODEL.PRECISION == "fp32"
    assert cfg_of("--precision", "bf16").MODEL.PRECISION == "bf16"
    # trailing KEY VALUE options are merged after the flags
    tail = [*TAIL, "MODEL.PRECISION", "fp32"]
    assert cfg_of("--precision", "bf16", tail=tail).MODEL.PRECISION == "fp32"
    with pytest.raises(SystemExit) as err:
        build_parser().parse_args(_eval(root, tmp_path, "--shots", "1", "--precision", "fp16"))
    assert err.value.code == 2 and "--precision" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seeds", "message"),
    [("-1", "--seeds '-1': -1 is negative"), ("3-1", "the range 3-1 is reversed; write 1-3")],
)
def test_bad_seeds_are_named_before_any_folder_is_made(root, tmp_path, capsys, seeds, message):
    out = tmp_path / "r"
    args = _eval(root, out, "--shots", "1", "--protocol", "knn", "--seeds", seeds, tail=[])
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()  # no empty cache/ left behind


def test_a_config_conflict_names_the_differing_setting(root, tmp_path, capsys):
    out = tmp_path / "runs"
    args = _eval(root, out, "--shots", "1", "--protocol", "knn", "--seeds", "1")
    assert main(args) == 0
    capsys.readouterr()
    bigger = [a if a != "32" else "48" for a in args]  # --img-size 32 -> 48
    assert main(bigger) == 2
    err = capsys.readouterr().err
    assert "computed with a different config: INPUT.SIZE (--img-size) 32 vs 48" in err
    assert "--force" in err


def test_slow_cpu_cells_get_a_hint_and_an_estimate(root, tmp_path, capsys):
    from sarfewshot.engine.grid.runner import first_cell_estimate, slow_cpu_hint

    out = tmp_path / "runs"
    args = _eval(root, out, "--shots", "1", "--protocol", "linear,knn", "--seeds", "1-2")
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "note:" not in text  # 32 px: nothing slow
    assert "estimate: the first cell took" in text and "other linear cell(s)" in text

    class _Cfg:
        class INPUT:
            SIZE = (224, 224)

    from sarfewshot.engine.grid.plan import Cell

    cells = [Cell(0, "mstar_soc", p, 10, s, cfg=_Cfg) for p in ("finetune", "knn") for s in (1, 2)]
    hint = slow_cpu_hint(cells, "cpu")
    assert "2 of these cells train a network at 224 px" in hint
    assert "--img-size 64 --protocol linear,knn" in hint
    assert slow_cpu_hint(cells, "cuda:0") is None
    line = first_cell_estimate(cells[0], {"timings": {"total_s": 94.0}}, cells)
    assert "1m34s" in line and "1 other finetune cell(s) need about 1m34s" in line
    assert "2 cell(s) of other protocols not timed yet" in line
