"""Cluster launches through submitit (the ``slurm`` extra): eval job arrays, multi-node pretraining.

- ``eval ... --launcher slurm|local --array N`` submits N jobs, job ``i`` running ``--shard i/N``
  of the grid; records merge by key as for hand-made shards.
- ``pretrain ... --launcher slurm|local --nodes M --gpus-per-node G`` submits one job of M tasks
  (one per node); each task runs ``torchrun --nnodes M --nproc-per-node G --node-rank <task>``
  with the first node of the job as the rendezvous host, so the job is one multi-node torchrun.

``slurm`` goes through ``sbatch``; ``local`` runs the same jobs as local subprocesses through
submitit's local executor (how tests and CI exercise the code path). Slurm jobs return at once
(the job ids are printed); local jobs are waited for. Job files and logs go to
``<output>/submitit/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from sarfewshot.errors import ConfigError

if TYPE_CHECKING:
    from sarfewshot.engine.grid import GridRequest

LAUNCHERS = ("slurm", "local")
# the flags consumed here; they are not passed on to the jobs
_LAUNCH_FLAGS = {"--launcher": 1, "--array": 1, "--nodes": 1, "--gpus-per-node": 1,
                 "--partition": 1, "--timeout-min": 1, "--rdzv-port": 1}  # fmt: skip


def add_launcher_arguments(p: argparse.ArgumentParser, pretrain: bool) -> None:
    """``--launcher`` and its job-shape flags (``--array`` for eval, nodes x GPUs for pretrain)."""
    g = p.add_argument_group("cluster launch (needs the slurm extra: pip install submitit)")
    g.add_argument(
        "--launcher", choices=LAUNCHERS, help="submit through submitit: slurm (sbatch) or local"
    )
    if pretrain:
        g.add_argument("--nodes", type=int, default=1, help="nodes of the job (default 1)")
        g.add_argument(
            "--gpus-per-node", type=int, default=1, help="processes (GPUs) per node (default 1)"
        )
        g.add_argument(
            "--rdzv-port", type=int, default=29500, help="torchrun port on node 0 (multi-node)"
        )
    else:
        g.add_argument("--array", type=int, metavar="N", help="N jobs, job i runs --shard i/N")
    g.add_argument("--partition", help="Slurm partition")
    g.add_argument("--timeout-min", type=int, default=24 * 60, help="job time limit (minutes)")


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "--launcher needs the submitit package: pip install 'sarfewshot[slurm]'"
        ) from None
    return submitit


def make_executor(
    launcher: str, folder: Path, name: str, nodes: int = 1, gpus_per_node: int = 0, **extra: Any
) -> Any:
    """A submitit executor for ``launcher`` writing its job files under ``folder``."""
    submitit = _submitit()
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher {launcher!r}: use slurm or local")
    executor = submitit.AutoExecutor(folder=folder, cluster=launcher)
    params: dict[str, Any] = {"name": name, "timeout_min": int(extra.pop("timeout_min", 1440))}
    if launcher == "slurm":
        params.update(nodes=nodes, tasks_per_node=1, gpus_per_node=gpus_per_node)
        if extra.get("partition"):
            params["slurm_partition"] = extra["partition"]
    executor.update_parameters(**params)
    return executor


# ----------------------------------------------------------------------------- eval arrays


def run_eval_shard(req: GridRequest) -> dict[str, int]:
    """The body of one eval array job: the grid of ``req`` (which names its shard)."""
    from sarfewshot.engine.grid import run_grid

    summary = run_grid(req)
    return {"total": summary.total, "ran": summary.ran, "failed": summary.failed}


def shard_requests(req: GridRequest, count: int) -> list[GridRequest]:
    """``count`` copies of ``req``, copy ``i`` (0-based) running shard ``(i, count)``."""
    if count < 1:
        raise ConfigError(f"--array {count}: need at least 1 job")
    if req.shard is not None:
        raise ConfigError("--array and --shard contradict each other; pass one")
    return [dataclasses.replace(req, shard=(i, count)) for i in range(count)]


def run_eval_job(req: GridRequest) -> dict[str, Any]:
    """One array job: :func:`run_eval_shard`, a user error returned as ``{"error": ...}``
    (so the launcher reports it in one line instead of a remote traceback)."""
    from sarfewshot.errors import SarFewShotError

    try:
        return run_eval_shard(req)
    except SarFewShotError as exc:
        return {"error": str(exc)}


def rerun_command(args: argparse.Namespace, shard: str) -> str:
    """The command that runs job ``shard``'s cells again here (finished cells are skipped)."""
    import shlex

    raw = list(getattr(args, "raw_argv", None) or ["eval", "..."])
    return "sarfewshot " + shlex.join([*strip_launch_flags(raw), "--shard", shard])


def _failure_reason(exc: BaseException) -> str:
    """The last line of a job's error (submitit puts the remote traceback in the message)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and set(ln.strip()) - {"-"}]
    return lines[-1] if lines else type(exc).__name__


def job_outcome(job: Any, shard: str, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """(result or {}, "" or the one line naming a failed or killed job, its log and rerun)."""
    submitit = _submitit()
    try:
        result = job.result()
    except submitit.core.utils.UncompletedJobError as exc:
        reason = f"was killed or did not finish ({_failure_reason(exc)})"
    except submitit.core.utils.FailedJobError as exc:
        reason = f"failed: {_failure_reason(exc)}"
    else:
        if "error" not in result:
            return result, ""
        reason = f"failed: {result['error']}"
    line = (
        f"job {shard} (id {job.job_id}) {reason}; log: {job.paths.stderr}; rerun its missing "
        f"cells with: {rerun_command(args, shard)}"
    )
    return {}, line


def rewrite_leaderboard(output: Path) -> Path | None:
    """Write ``output/leaderboard.csv`` once from every record under ``output`` (all jobs)."""
    import warnings

    from sarfewshot.results.aggregate import aggregate_records
    from sarfewshot.results.export import write_csv
    from sarfewshot.results.records import iter_records

    records = list(iter_records([output]))
    if not records:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # each job's table already warned; the rows carry marks
        rows = aggregate_records(records)
    return write_csv(rows, output / "leaderboard.csv")


def finish_eval_array(
    args: argparse.Namespace,
    output: str | Path,
    jobs: Sequence[tuple[str, Any]],
    printer: Callable[[str], Any],
) -> int:
    """Wait for every job, print one line per job (failed ones name log and rerun command),
    then rewrite ``output``'s leaderboard once from every record; 1 when a job or a cell
    failed."""
    failed, broken = 0, 0
    for shard, job in jobs:
        result, problem = job_outcome(job, shard, args)
        if problem:
            broken += 1
            printer(problem)
            continue
        failed += result["failed"]
        printer(f"job {shard}: {result['ran']} cell(s) ran, {result['failed']} failed")
    board = rewrite_leaderboard(Path(output))
    if board is not None:
        printer(f"leaderboard (every record, all jobs): {board}")
    return 1 if failed or broken else 0


def _finish_slurm_array(
    args: argparse.Namespace, output: str, jobs: Sequence[tuple[str, str]]
) -> int:
    """The body of the Slurm job that runs after the array: :func:`finish_eval_array`."""
    submitit = _submitit()
    folder = Path(output) / "submitit"
    handles = [(shard, submitit.SlurmJob(folder=folder, job_id=job_id)) for shard, job_id in jobs]
    return finish_eval_array(args, output, handles, print)


def launch_eval(
    args: argparse.Namespace, req: GridRequest, printer: Callable[[str], Any] = print
) -> int:
    """Submit ``--array N`` jobs of ``req``; local jobs are awaited (exit 1 if a job or cell
    failed). ``args`` gives the launcher flags (and the command line for rerun hints).

    A failed or killed job ends with one line naming it, its log file and the command that
    reruns its cells; once every job has ended, ``leaderboard.csv`` is rewritten from every
    record (Slurm: by a final job that waits for the array, ``afterany``).
    """
    jobs_reqs = shard_requests(req, int(args.array or 1))
    shards = [f"{r.shard[0] + 1}/{r.shard[1]}" for r in jobs_reqs]
    folder = Path(req.output) / "submitit"
    executor = make_executor(
        args.launcher, folder, "sarfewshot-eval", timeout_min=args.timeout_min,
        partition=args.partition,
    )  # fmt: skip
    jobs = executor.map_array(run_eval_job, jobs_reqs)
    printer(
        f"submitted {len(jobs)} eval job(s) ({args.launcher}): {', '.join(j.job_id for j in jobs)}"
    )
    if args.launcher == "slurm":
        array_id = str(jobs[0].job_id).split("_")[0]
        executor.update_parameters(
            slurm_additional_parameters={"dependency": f"afterany:{array_id}"}
        )
        ids = [(shard, j.job_id) for shard, j in zip(shards, jobs)]
        final = executor.submit(_finish_slurm_array, args, str(req.output), ids)
        printer(
            f"logs under {folder}; records merge under {req.output}/records; job "
            f"{final.job_id} rewrites leaderboard.csv after the array and lists failed jobs in "
            f"{final.paths.stdout}"
        )
        return 0
    return finish_eval_array(args, req.output, list(zip(shards, jobs)), printer)


# ----------------------------------------------------------------------------- pretraining


def strip_launch_flags(raw: Sequence[str]) -> list[str]:
    """The command-line arguments without the launcher's own flags."""
    out: list[str] = []
    skip = 0
    for token in raw:
        if skip:
            skip -= 1
            continue
        name = token.split("=", 1)[0]
        if name in _LAUNCH_FLAGS:
            skip = 0 if "=" in token else _LAUNCH_FLAGS[name]
            continue
        out.append(token)
    return out


def torchrun_command(
    argv: Sequence[str], nodes: int, per_node: int, node_rank: int, host: str, port: int
) -> list[str]:
    """``python -m torch.distributed.run ... -m sarfewshot pretrain ARGV`` for one node
    (``--standalone`` on a single node: torchrun picks a free port itself)."""
    where = (
        ["--standalone"]
        if nodes == 1
        else [f"--node-rank={node_rank}", f"--master-addr={host}", f"--master-port={port}"]
    )
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}",
        f"--nproc-per-node={per_node}", *where, "-m", "sarfewshot", "pretrain", *argv,
    ]  # fmt: skip


def run_pretrain_node(argv: list[str], nodes: int, per_node: int, port: int) -> int:
    """The body of one task (node) of the pretraining job: torchrun for this node."""
    env = _submitit().JobEnvironment()
    rank = env.global_rank if nodes > 1 else 0
    host = env.hostnames[0] if nodes > 1 else "127.0.0.1"
    cmd = torchrun_command(argv, nodes, per_node, rank, host, port)
    proc = subprocess.run(cmd, check=False, env={**os.environ})
    if proc.returncode:
        raise RuntimeError(f"torchrun on node {rank} exited with {proc.returncode}: {cmd}")
    return proc.returncode


def launch_pretrain(args: argparse.Namespace, printer: Callable[[str], Any] = print) -> int:
    """Submit ``pretrain`` as one job of ``--nodes`` tasks, each a torchrun of its node."""
    if args.nodes < 1 or args.gpus_per_node < 1:
        raise ConfigError("--nodes and --gpus-per-node must be >= 1")
    if args.launcher == "local" and args.nodes != 1:
        raise ConfigError("--launcher local runs on this machine: use --nodes 1")
    if not args.output:
        raise ConfigError("--launcher needs --output (the job files go under it)")
    argv = strip_launch_flags(args.raw_args)
    folder = Path(args.output) / "submitit"
    executor = make_executor(
        args.launcher, folder, "sarfewshot-pretrain", nodes=args.nodes,
        gpus_per_node=args.gpus_per_node, timeout_min=args.timeout_min, partition=args.partition,
    )  # fmt: skip
    job = executor.submit(run_pretrain_node, argv, args.nodes, args.gpus_per_node, args.rdzv_port)
    printer(
        f"submitted pretraining job {job.job_id} ({args.launcher}, {args.nodes} node(s) x "
        f"{args.gpus_per_node} process(es)); logs under {folder}"
    )
    if args.launcher == "slurm":
        return 0
    job.result()
    printer(f"final checkpoint: {Path(args.output) / 'checkpoint-last.pth'}")
    return 0
