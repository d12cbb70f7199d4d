"""Planning: what a grid command asks for, its cells, shards and each cell's status.

Nothing here touches data or models: a :class:`GridRequest` is validated, cells are described
by :class:`Cell`, shards are parsed and selected, and :func:`cell_status` reads a cell's record
to say whether it still has to run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from sarfewshot.errors import ConfigError

DEFAULT_PROTOCOLS = ("finetune", "linear")
ALL_SHOTS = -1  # K of the whole train pool (``--shots all``; split files ``shot_all``)

Printer = Callable[[str], None]

# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class BackboneRequest:
    """A backbone as named on the command line: registry name, optional weights and arch."""

    name: str
    weights: str | None = None
    arch: str | None = None


@dataclass
class GridRequest:
    """Everything ``sarfewshot eval`` asks for.

    Attributes:
        backbones: the backbones to evaluate.
        datasets: dataset names (aliases allowed).
        shots: K values; :data:`ALL_SHOTS` (``--shots all``) is the whole train pool (less the
            validation pool), the full-label budget.
        protocols: protocol names (default :data:`DEFAULT_PROTOCOLS`).
        seeds: seeds for every protocol; None means each protocol's ``default_seeds``.
        output: run folder (records, splits, caches, leaderboard).
        root: dataset root (default ``DATASET.ROOT`` of the config).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
        img_size: network input size (the preset's crop stays; the resize target changes).
        feature_cache: train ``linear`` on cached features (False: re-run the backbone).
        force: recompute cells that already have a record.
        config_file: a CoOp-style YAML merged over every protocol's preset.
        opts: trailing ``KEY VALUE`` overrides.
        shard: ``(index, count)`` with 0-based index, or None for every cell.
        progress: draw progress bars (None: unless ``SARFEWSHOT_NO_PROGRESS=1`` or no TTY).
        dataset_options: extra keyword options passed to the dataset plug-ins.
        tensorboard: trained cells write per-epoch loss and LR event files under
            ``<output>/tensorboard/<cell id>``.
        serial: True runs one cell at a time (the reference path); False trains the seeds
            of a (backbone, dataset, protocol, K) group together as one stacked model; None
            (default) picks by device: batched on CUDA, serial on a CPU, where stacking was
            measured slower (docs/performance.md).
        conditions: named test sets (operating conditions) every cell is scored on after one
            training, each with its own record keyed by ``condition``; ``["all"]`` names every
            condition of each dataset setting; None (default): the test set, as always.
    """

    backbones: list[BackboneRequest]
    datasets: list[str]
    shots: list[int]
    protocols: list[str] = field(default_factory=lambda: list(DEFAULT_PROTOCOLS))
    seeds: list[int] | None = None
    output: Path = Path("runs")
    root: str | None = None
    device: str = "auto"
    img_size: int | None = None
    feature_cache: bool = True
    force: bool = False
    config_file: str | None = None
    opts: list[str] = field(default_factory=list)
    shard: tuple[int, int] | None = None
    progress: bool | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    tensorboard: bool = False
    serial: bool | None = None
    conditions: list[str] | None = None


@dataclass
class Cell:
    """One grid cell and what it resolved to.

    A cell of a ``--conditions`` run trains once and is scored on several test sets: its
    ``conditions`` (the dataset's :class:`~sarfewshot.data.base.TestCondition` objects, the
    first one in the test slot) each have their own key in ``condition_keys``; ``key`` is the
    first one's.
    """

    backbone: int  # index into the resolved backbones
    dataset: str  # canonical dataset name
    protocol: str  # canonical protocol name
    shots: int
    seed: int
    key: dict[str, Any] = field(default_factory=dict)
    cfg: Any = None
    fingerprint: str = ""
    conditions: tuple[Any, ...] = ()
    condition_keys: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def keys(self) -> list[dict[str, Any]]:
        """Every key the cell writes a record under (one per condition, or its one key)."""
        return list(self.condition_keys.values()) or [self.key]


@dataclass
class GridSummary:
    """What a grid run did."""

    total: int = 0  # cells in this shard
    done_before: int = 0
    ran: int = 0
    failed: int = 0
    records: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    leaderboard_csv: Path | None = None
    table: str = ""


# ----------------------------------------------------------------------------- sharding


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``--shard i/n`` (1-based ``i``) into a 0-based ``(index, count)``."""
    try:
        left, right = text.split("/")
        index, count = int(left), int(right)
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 1/4") from None
    if count < 1 or not 1 <= index <= count:
        raise ConfigError(f"--shard {text!r}: need 1 <= i <= n")
    return index - 1, count


def shard_from_env(environ: dict[str, str] | None = None) -> tuple[int, int] | None:
    """The shard of a SLURM array task (``SLURM_ARRAY_TASK_ID``, ``_COUNT``, ``_MIN``) or None."""
    env = os.environ if environ is None else environ
    task, count = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
    if task is None or count is None:
        return None
    try:
        index = int(task) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        total = int(count)
    except ValueError:
        raise ConfigError(
            f"SLURM_ARRAY_TASK_ID={task!r} / SLURM_ARRAY_TASK_COUNT={count!r} are not integers"
        ) from None
    if total < 1 or not 0 <= index < total:
        raise ConfigError(
            f"SLURM_ARRAY_TASK_ID={task} is outside the array (count {count}, "
            f"min {env.get('SLURM_ARRAY_TASK_MIN', '0')})"
        )
    return index, total


def select_shard(cells: Sequence[Cell], shard: tuple[int, int] | None) -> list[Cell]:
    """Every ``count``-th cell of the canonical ordering, starting at ``index``.

    The ordering is the grid's enumeration (backbone, dataset, protocol, K, seed), which depends
    only on the command, so shards ``1/n .. n/n`` of the same command partition the grid.
    """
    if shard is None:
        return list(cells)
    index, count = shard
    return [c for i, c in enumerate(cells) if i % count == index]


def validate_request(req: GridRequest) -> None:
    for flag, values in (
        ("--backbone", req.backbones),
        ("--dataset", req.datasets),
        ("--shots", req.shots),
        ("--protocol", req.protocols),
    ):
        if not values:
            raise ConfigError(f"{flag}: give at least one value")
    bad = [k for k in req.shots if int(k) < 1 and int(k) != ALL_SHOTS]
    if bad:
        raise ConfigError(f"--shots {bad[0]}: K must be a positive integer (or all)")
    if req.seeds is not None and not req.seeds:
        raise ConfigError("--seeds: give at least one seed")
    if req.conditions is not None and not [c for c in req.conditions if c]:
        raise ConfigError("--conditions: give 'all' or condition names, e.g. id,depression_45")
    if req.img_size is not None and int(req.img_size) < 1:
        raise ConfigError(f"--img-size {req.img_size}: must be a positive integer")
    output = Path(req.output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output}: is a file, not a folder")


def unique(items: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


# ----------------------------------------------------------------------------- status


STATUS_ORDER = ("conflict", "stale", "failed", "todo", "done")


def cell_status(output: Path, cell: Cell, dataset_version: str) -> str:
    """``done`` (ok or diverged record, same config and dataset version), ``conflict``
    (other config), ``stale`` (another version of the dataset folder), ``failed`` (a failed
    record, retried) or ``todo``. A cell with several conditions takes the first of
    :data:`STATUS_ORDER` that one of its records has: done only when every condition is."""
    found = {key_status(output, key, cell.fingerprint, dataset_version) for key in cell.keys}
    return next(st for st in STATUS_ORDER if st in found)


def key_status(output: Path, key: dict[str, Any], fingerprint: str, dataset_version: str) -> str:
    """The status of the record of one key (see :func:`cell_status`)."""
    from sarfewshot.results.records import (
        RecordError,
        key_tuple,
        read_record,
        record_path,
    )
    from sarfewshot.results.records import (
        dataset_version as record_dataset_version,
    )

    path = record_path(output, key)
    if not path.is_file():
        return "todo"
    try:
        record = read_record(path)
    except RecordError:
        return "todo"  # a damaged record is recomputed
    if key_tuple(record["key"]) != key_tuple(key):
        return "todo"
    if record["status"] == "failed":
        return "failed"
    if record["config_sha256"] != fingerprint:
        return "conflict"
    if record_dataset_version(record) != dataset_version:
        return "stale"
    return "done"
