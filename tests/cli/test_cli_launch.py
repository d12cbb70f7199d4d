"""``--launcher local|slurm`` through submitit: eval job arrays and multi-node pretraining jobs."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from sarfewshot.cli.main import main
from sarfewshot.engine.grid import GridRequest
from sarfewshot.errors import ConfigError
from sarfewshot.launch import shard_requests, strip_launch_flags, torchrun_command
from sarfewshot.results.records import read_record, record_files
from tests.cli.conftest import TAIL, TINY
from tests.conftest import elastic_folders


def _eval(root: Path, out: Path, *extra: str) -> list[str]:
    grid = ["--shots", "1,2", "--protocol", "knn,prototype", "--seeds", "1-2"]
    where = ["--dataset", "synthetic", "--root", str(root), "--output", str(out)]
    return ["eval", *TINY, *where, *grid, *extra, *TAIL]


def test_local_array_jobs_merge_into_the_full_grid(root, tmp_path, capsys, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "runs"
    assert main(_eval(root, out, "--launcher", "local", "--array", "2")) == 0
    text = capsys.readouterr().out
    assert "submitted 2 eval job(s) (local)" in text
    assert "job 1/2: 4 cell(s) ran, 0 failed" in text and "job 2/2: 4 cell(s) ran" in text
    files = record_files(out)
    assert len(files) == 8 and all(read_record(f)["status"] == "ok" for f in files)
    # the unsharded command finds every cell of its grid done
    assert main(_eval(root, out)) == 0
    assert "8 cells already done, 0 to run" in capsys.readouterr().out


def test_launcher_flag_errors(root, tmp_path, capsys):
    assert main(_eval(root, tmp_path / "r", "--array", "2")) == 2
    assert "--array needs --launcher" in capsys.readouterr().err
    req = GridRequest(backbones=[], datasets=[], shots=[1], shard=(0, 2))
    with pytest.raises(ConfigError, match="--array and --shard"):
        shard_requests(req, 2)


def test_array_jobs_get_picklable_shards_of_the_request(root, tmp_path):
    """submitit pickles each job's argument: a GridRequest, not the CLI's namespace."""
    from sarfewshot.cli.eval import request_from_args
    from sarfewshot.cli.main import build_parser

    args = build_parser().parse_args(_eval(root, tmp_path / "r"))
    req = request_from_args(args)
    jobs = shard_requests(req, 3)
    assert [j.shard for j in jobs] == [(0, 3), (1, 3), (2, 3)]
    assert req.shard is None  # the command's request is left as it was
    for job in jobs:
        back = pickle.loads(pickle.dumps(job))
        assert back == job and back.backbones == req.backbones and back.opts == req.opts
    with pytest.raises(ConfigError, match="at least 1 job"):
        shard_requests(req, 0)


def test_pretrain_job_is_one_torchrun_per_node():
    raw = ["--config", "x", "--launcher", "slurm", "--nodes=4", "--gpus-per-node", "8",
           "--output", "o", "OPTIM.EPOCHS", "2"]  # fmt: skip
    argv = strip_launch_flags(raw)
    assert argv == ["--config", "x", "--output", "o", "OPTIM.EPOCHS", "2"]
    cmd = torchrun_command(argv, 4, 8, 2, "node001", 29500)
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nnodes=4", "--nproc-per-node=8", "--node-rank=2", "--master-addr=node001"} <= set(
        cmd
    )
    assert cmd[-len(argv) - 2 :] == ["sarfewshot", "pretrain", *argv]
    assert "--standalone" in torchrun_command(argv, 1, 2, 0, "node001", 29500)


def test_local_pretrain_job_runs_torchrun(tmp_path, capsys, monkeypatch, private_tmpdir):
    pytest.importorskip("submitit")
    from tests.pretrain.synthetic_sar import write_chips

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    chips = tmp_path / "chips"
    write_chips(chips, n=8, size=72)
    out = tmp_path / "pt"
    argv = ["pretrain", "--config", "sarjepa_tiny", "--data", str(chips), "--output", str(out),
            "--max-steps", "1", "--batch-size", "4", "--launcher", "local", "--gpus-per-node",
            "1", "OPTIM.EPOCHS", "1"]  # fmt: skip
    assert main(argv) == 0
    assert "submitted pretraining job" in capsys.readouterr().out
    assert (out / "checkpoint-last.pth").is_file()
    assert list((out / "submitit").glob("*_log.out"))
    assert len(elastic_folders(private_tmpdir)) == 1  # torchrun's log folder, not in /tmp


def test_a_failed_local_job_is_one_line_and_the_leaderboard_holds_every_record(
    root, tmp_path, capsys, monkeypatch
):
    """Job 1/2's cells went stale (the folder changed after a hand-run shard): that job fails
    with one line naming it, its log and the rerun command; job 2/2 runs; the leaderboard is
    rewritten once from every record of both versions."""
    import shutil

    pytest.importorskip("submitit")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = tmp_path / "data"
    shutil.copytree(root, data)
    out = tmp_path / "runs"
    assert main(_eval(data, out, "--shard", "1/2")) == 0
    chip = sorted((data / "test").rglob("*.png"))[0]
    chip.write_bytes(sorted((data / "train").rglob("*.png"))[0].read_bytes())
    capsys.readouterr()
    assert main(_eval(data, out, "--launcher", "local", "--array", "2")) == 1
    text = capsys.readouterr().out
    failed = [ln for ln in text.splitlines() if ln.startswith("job 1/2")]
    assert len(failed) == 1 and "Traceback" not in text
    line = failed[0]
    assert "failed: " in line and "--force" in line  # the grid's own one-line reason
    log = line.split("; log: ")[1].split(";")[0]
    assert Path(log).is_file() and log.endswith("_log.err")
    rerun = line.split("rerun its missing cells with: ")[1]
    assert rerun.startswith("sarfewshot eval ") and rerun.endswith("--shard 1/2")
    assert "--launcher" not in rerun and "--array" not in rerun
    assert "job 2/2: 4 cell(s) ran, 0 failed" in text
    board = (out / "leaderboard.csv").read_text().splitlines()
    assert "leaderboard (every record, all jobs)" in text
    assert sum(int(ln.split(",")[5]) for ln in board[1:]) == 8  # n_seeds over every row
