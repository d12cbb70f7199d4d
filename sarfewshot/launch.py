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


def launch_eval(
    args: argparse.Namespace, req: GridRequest, printer: Callable[[str], Any] = print
) -> int:
    """Submit ``--array N`` jobs of ``req``; local jobs are awaited (exit 1 if a cell failed).

    ``args`` gives the launcher flags; each job runs one shard of ``req``.
    """
    jobs_reqs = shard_requests(req, int(args.array or 1))
    folder = Path(req.output) / "submitit"
    executor = make_executor(
        args.launcher, folder, "sarfewshot-eval", timeout_min=args.timeout_min,
        partition=args.partition,
    )  # fmt: skip
    jobs = executor.map_array(run_eval_shard, jobs_reqs)
    printer(
        f"submitted {len(jobs)} eval job(s) ({args.launcher}): {', '.join(j.job_id for j in jobs)}"
    )
    if args.launcher == "slurm":
        printer(f"logs under {folder}; records merge under {req.output}/records")
        return 0
    failed = 0
    for job_req, job in zip(jobs_reqs, jobs):
        result = job.result()
        failed += result["failed"]
        index, count = job_req.shard
        printer(f"job {index + 1}/{count}: {result['ran']} cell(s) ran, {result['failed']} failed")
    return 1 if failed else 0


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
