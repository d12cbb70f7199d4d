"""The runner: resolve a request into cells, plan what is left, hand groups to an executor,
write each record as it comes and aggregate the leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sarfewshot.engine.grid.config import (
    build_protocol_cfg,
    cell_cfg,
    cfg_dict,
    config_differences,
    config_sha,
    probe_cfg,
)
from sarfewshot.engine.grid.data import SharedData, Workspace, scored_name, val_fraction
from sarfewshot.engine.grid.executors import Executor, SerialExecutor
from sarfewshot.engine.grid.plan import (
    Cell,
    GridRequest,
    GridSummary,
    Printer,
    cell_status,
    select_shard,
    shard_from_env,
    unique,
    validate_request,
)
from sarfewshot.engine.grid.progress import Bars, progress_enabled
from sarfewshot.engine.grid.record import cell_label, unfinished_cells, write_leaderboard
from sarfewshot.engine.grid.resolve import (
    ResolvedBackbone,
    ResolvedDataset,
    canonical_backbone,
    check_output_outside,
    dataset_options_for,
    resolve_backbone,
    resolve_conditions,
    resolve_dataset,
    resolve_protocol,
)
from sarfewshot.errors import ConfigError, DataVersionError
from sarfewshot.utils.device import resolve_device
from sarfewshot.utils.progress import format_seconds


class GridRunner:
    """Resolves a :class:`GridRequest` into cells, then runs the cells that are not done."""

    def __init__(self, req: GridRequest, printer: Printer = print) -> None:
        self.req = req
        self.output = Path(req.output)
        self.print = printer
        self.progress = progress_enabled(req.progress)
        self.device = "cpu"
        self.protocols: dict[str, type] = {}
        self.datasets: dict[str, ResolvedDataset] = {}
        self.backbones: list[ResolvedBackbone] = []
        self.base_cfgs: dict[tuple[int, str, str], tuple[Any, str]] = {}
        self.cells: list[Cell] = []
        self.command_keys: set[tuple] = set()  # every shard's cells: what the table shows
        self._todo: list[Cell] = []  # this run's pending cells (for the first-cell estimate)

    # -- resolution ------------------------------------------------------------------------

    def prepare(self) -> list[Cell]:
        """Resolve names, folders and weights, build configs and enumerate this shard's cells.

        Unknown names, a missing root, an output folder inside the root, a wrong layout, an
        unreadable listing and missing weights raise here; :meth:`run` then draws every pending
        split (K larger than a class's pool raises there) before the first cell runs.
        """
        req = self.req
        validate_request(req)
        self.device = str(resolve_device(req.device))  # records keep the name as given
        self._resolve_protocols()
        probe = probe_cfg(req)
        root = str(req.root or probe.DATASET.ROOT) or None
        for name in unique(req.datasets):
            options = {**dataset_options_for(name, probe), **req.dataset_options}
            check_output_outside(self.output, root)
            memo_dir = self.output / "cache" / "fingerprints"
            ds = resolve_dataset(name, root, options, memo_dir, self.progress)
            if ds.name in self.datasets:
                continue  # an alias of one resolved already: its extra sets are listed
            if req.conditions is not None:
                resolve_conditions(ds, req.conditions, memo_dir, self.progress)
            self.datasets[ds.name] = ds
        size = probe.INPUT.SIZE
        img_size = int(req.img_size or (size[0] if isinstance(size, (list, tuple)) else size))
        calibration = str(probe.MODEL.BACKBONE.INPUT_CALIBRATION)
        self.backbones = [
            resolve_backbone(canonical_backbone(b), img_size, calibration) for b in req.backbones
        ]
        from sarfewshot.models.factory import describe_arch

        for bb in self.backbones:  # which network each row is, before any cell runs
            self.print(f"backbone {describe_arch(bb.info)}")
        self._check_backbone_labels()
        self._build_cfgs()
        from sarfewshot.results.records import key_tuple

        shard = req.shard if req.shard is not None else shard_from_env()
        every = self._enumerate()
        self.command_keys = {key_tuple(k) for c in every for k in c.keys}
        self.cells = select_shard(every, shard)
        return self.cells

    def _resolve_protocols(self) -> None:
        from sarfewshot.engine.registry import TRAINER_REGISTRY

        for name in unique(self.req.protocols):
            cls = resolve_protocol(name)
            self.protocols.setdefault(TRAINER_REGISTRY.canonical(name), cls)

    def _check_backbone_labels(self) -> None:
        seen: dict[tuple, int] = {}
        for i, bb in enumerate(self.backbones):
            ident = (bb.label, bb.info.get("weights_sha256"))
            if ident in seen:
                raise ConfigError(
                    f"--backbone lists {bb.label!r} twice with the same weights; drop one"
                )
            seen[ident] = i

    def _build_cfgs(self) -> None:
        for b, bb in enumerate(self.backbones):
            for ds in self.datasets.values():
                for pname, cls in self.protocols.items():
                    cfg = build_protocol_cfg(self.req, cls, bb.request, ds, self.device)
                    # a protocol's own checks (an optional package), before any cell runs
                    getattr(cls, "preflight", lambda _cfg: None)(cfg)
                    if cfg.TEST.SPLIT == "val" and ds.conditions:
                        raise ConfigError(
                            "--conditions scores named test sets (the in-distribution one on "
                            "the validation pool where the test set is out of distribution); "
                            "drop --eval-split val / TEST.SPLIT val"
                        )
                    if cfg.TEST.SPLIT == "val" and val_fraction(cfg, ds) <= 0:
                        raise ConfigError(
                            f"TEST.SPLIT val scores the validation pool, and {ds.name} has none "
                            "(DATASET.VAL_POOL is 0); set DATASET.VAL_POOL above 0"
                        )
                    self.base_cfgs[(b, ds.name, pname)] = (cfg, config_sha(cfg))

    def _enumerate(self) -> list[Cell]:
        """Every cell in canonical order: backbone, dataset, protocol, K, seed."""
        cells = []
        for b, bb in enumerate(self.backbones):
            for ds in self.datasets.values():
                for pname, cls in self.protocols.items():
                    seeds = self.req.seeds if self.req.seeds is not None else cls.default_seeds
                    for k in unique([int(v) for v in self.req.shots]):
                        for s in unique([int(v) for v in seeds]):
                            cells.append(self._cell(b, bb, ds, pname, k, s))
        return cells

    def _cell(
        self, b: int, bb: ResolvedBackbone, ds: ResolvedDataset, pname: str, k: int, s: int
    ) -> Cell:
        base, fingerprint = self.base_cfgs[(b, ds.name, pname)]
        key = {
            "backbone": bb.label,
            "weights_sha256": bb.info.get("weights_sha256"),
            "dataset": scored_name(ds.name, str(base.TEST.SPLIT)),
            "protocol": pname,
            "shots": k,
            "seed": s,
        }
        cell = Cell(b, ds.name, pname, k, s, key, cell_cfg(base, k, s), fingerprint)
        if ds.conditions:
            cell.conditions = tuple(ds.conditions)
            cell.condition_keys = {c.name: condition_key(key, ds, c.name) for c in ds.conditions}
            cell.key = next(iter(cell.condition_keys.values()))
        return cell

    # -- status ----------------------------------------------------------------------------

    def status(self, cell: Cell) -> str:
        """The cell's status (see :func:`~sarfewshot.engine.grid.plan.cell_status`)."""
        return cell_status(self.output, cell, self.datasets[cell.dataset].version)

    def plan(self) -> tuple[list[Cell], int]:
        """The cells to run (in execution order) and the number already done."""
        statuses = [(c, "todo" if self.req.force else self.status(c)) for c in self.cells]
        conflicts = [c for c, st in statuses if st == "conflict"]
        if conflicts:
            raise ConfigError(self._conflict_message(conflicts))
        self._check_stale([c for c, st in statuses if st == "stale"])
        todo = [c for c, st in statuses if st != "done"]
        order = {name: i for i, name in enumerate(self.datasets)}
        porder = {name: i for i, name in enumerate(self.protocols)}
        # Dataset-major execution keeps one dataset's images in memory at a time.
        todo.sort(key=lambda c: (order[c.dataset], c.backbone, porder[c.protocol], c.shots, c.seed))
        return todo, len(statuses) - len(todo)

    def _conflict_message(self, conflicts: list[Cell]) -> str:
        """Which settings differ (recorded vs now) for the first conflicting cell."""
        from sarfewshot.results.records import cell_id, read_record, record_path

        first = conflicts[0]
        recorded = read_record(record_path(self.output, first.key)).get("config") or {}
        diffs = config_differences(recorded, cfg_dict(first.cfg))
        what = "; ".join(diffs[:5]) + ("; ..." if len(diffs) > 5 else "")
        differing = f": {what} (recorded vs now)" if diffs else ""
        return (
            f"{len(conflicts)} cell(s) in {self.output} were computed with a different "
            f"config{differing}, e.g. {cell_id(first.key)}; pass --force to recompute them or "
            "choose another --output"
        )

    def _check_stale(self, stale: list[Cell]) -> None:
        """Stop when finished cells were computed on another version of a dataset folder."""
        if not stale:
            return
        counts: dict[str, int] = {}
        for cell in stale:
            counts[cell.dataset] = counts.get(cell.dataset, 0) + 1
        parts = [
            f"{n} finished cell(s) of dataset {name!r} were computed on another version of "
            f"{self.datasets[name].listing.root} (files added, removed or changed since)"
            for name, n in counts.items()
        ]
        raise DataVersionError(
            f"{'; '.join(parts)}, in {self.output}. Pass --force to recompute them on the "
            "current folder, or choose another --output to keep both versions apart"
        )

    # -- execution -------------------------------------------------------------------------

    def workspace(self) -> Workspace:
        """What the executors read: run folder, device, resolved items and fresh caches."""
        shared = SharedData(
            self.output,
            self.device,
            self.progress,
            use_disk=self.req.feature_cache,
            refresh=self.req.force,
        )
        return Workspace(
            self.output,
            self.device,
            self.progress,
            self.datasets,
            self.backbones,
            self.protocols,
            shared,
            self.req.tensorboard,
            self.print,
        )

    def executor(self, ws: Workspace) -> Executor:
        """``SerialExecutor`` under ``--serial`` (and by default on a CPU), else batched."""
        serial = self.req.serial
        if serial is None:
            serial = not str(ws.device).startswith("cuda")
        if serial:
            return SerialExecutor(ws)
        from sarfewshot.engine.grid.batched import BatchedExecutor

        return BatchedExecutor(ws)

    def run(self) -> GridSummary:
        """Run the pending cells, then aggregate every record of the run folder."""
        if not self.cells:
            self.prepare()
        todo, done = self.plan()
        ws = self.workspace()
        for cell in todo:
            # Every split is drawn (or checked) before any cell runs, so a K larger than a
            # class's pool or a split that no longer matches its folder stops the grid up front.
            ws.split(cell, redraw=self.req.force)
        summary = GridSummary(total=len(self.cells), done_before=done)
        self.print(f"{done} cells already done, {len(todo)} to run")
        self._todo = todo
        hint = slow_cpu_hint(todo, str(ws.device))
        if hint:
            self.print(hint)
        bars = Bars(len(todo), self.progress)
        ws.printer = self._printer(bars)
        executor = self.executor(ws)
        counter = [0, len(todo)]
        try:
            for group in executor.groups(todo):
                self._run_group(executor, group, bars, summary, counter)
        finally:
            bars.close()
            ws.printer = self.print
        problems = unfinished_cells(self.output, self.cells, self.backbones)
        write_leaderboard(self.output, self.command_keys, summary, self.print, problems)
        return summary

    def _printer(self, bars: Bars) -> Printer:
        if not bars.enabled:
            return self.print
        return lambda text: bars.cells.write(text)

    def _run_group(
        self,
        executor: Executor,
        group: list[Cell],
        bars: Bars,
        summary: GridSummary,
        counter: list[int],
    ) -> None:
        say = executor.ws.printer
        pending = []
        for cell in group:
            if not self.req.force and self.status(cell) == "done":
                counter[0] += 1
                label = cell_label(cell, self.backbones)
                tag = f"[{counter[0]}/{counter[1]}]"
                say(f"{tag} {label}: done meanwhile by another process, skipped")
                bars.end_cell()
            else:
                pending.append(cell)
        if not pending:
            return
        bars.start_cell(_group_label(pending, self.backbones))
        results = executor.run_group(pending, bars)
        for cell, records in zip(pending, results):
            counter[0] += 1
            for record in records:
                self._report(cell, record, summary, f"[{counter[0]}/{counter[1]}]", say)
            bars.end_cell()

    def _report(
        self, cell: Cell, record: dict, summary: GridSummary, tag: str, say: Printer
    ) -> None:
        label = cell_label(cell, self.backbones)
        if "condition" in record["key"]:
            label += f" condition={record['key']['condition']}"
        if record["status"] == "ok":
            acc = record["metrics"]["accuracy"]
            say(f"{tag} {label}: {acc:.2f}% ({record['timings']['total_s']:.1f} s)")
        else:
            summary.failed += 1
            summary.failures.append(f"{label}: {record['status']}: {record['error']}")
            retry = "rerun to retry" if record["status"] == "failed" else "not retried"
            say(f"{tag} {label}: {record['status'].upper()} ({record['error']}); {retry}")
        from sarfewshot.results.records import write_record

        summary.records.append(write_record(self.output, record))
        summary.ran += 1
        if summary.ran == 1:
            estimate = first_cell_estimate(cell, record, self._todo)
            if estimate:
                say(estimate)


# Protocols that train per cell (slow at 224 px on a CPU), as opposed to cached-feature ones.
TRAINED_PROTOCOLS = ("finetune", "linear", "MIM_finetune", "MIM_linear")
QUICK_LOOK = "--img-size 64 --protocol linear,knn"


def _input_size(cell: Cell) -> int:
    size = getattr(getattr(cell.cfg, "INPUT", None), "SIZE", 0) or 0
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def slow_cpu_hint(todo: list[Cell], device: str) -> str | None:
    """On a CPU, a line saying that trained cells at 224 px are slow, and the quick-look flags."""
    if not device.startswith("cpu"):
        return None
    heavy = [c for c in todo if c.protocol in TRAINED_PROTOCOLS and _input_size(c) >= 224]
    if not heavy:
        return None
    return (
        f"note: {len(heavy)} of these cells train a network at {_input_size(heavy[0])} px on "
        f"the CPU, minutes per cell; an estimate follows the first cell. For a quick look: "
        f"{QUICK_LOOK}"
    )


def first_cell_estimate(cell: Cell, record: dict, todo: list[Cell]) -> str | None:
    """After the first cell: the time the other cells of its protocol need at its pace."""
    seconds = float((record.get("timings") or {}).get("total_s") or 0.0)
    same = sum(1 for c in todo if c.protocol == cell.protocol) - 1
    if seconds <= 0 or same <= 0:
        return None
    others = len(todo) - 1 - same
    rest = f"; {others} cell(s) of other protocols not timed yet" if others else ""
    return (
        f"estimate: the first cell took {format_seconds(seconds)}; the {same} other "
        f"{cell.protocol} cell(s) need about {format_seconds(seconds * same)} at that pace{rest}"
    )


def condition_key(key: dict, ds: ResolvedDataset, condition: str) -> dict:
    """The key of one condition of a cell: the dataset named ``<setting>:<condition>`` (the
    setting is the dataset's variant, e.g. ``atrnet_star_eoc_depression``), with ``setting``
    and ``condition`` fields, so every setting and condition of a dataset shares a run folder."""
    setting = ds.split_name or ds.name
    return {**key, "dataset": f"{setting}:{condition}", "setting": setting, "condition": condition}


def _group_label(cells: list[Cell], backbones: list[ResolvedBackbone]) -> str:
    if len(cells) == 1:
        return cell_label(cells[0], backbones)
    first = cells[0]
    seeds = ",".join(str(c.seed) for c in cells)
    return (
        f"{backbones[first.backbone].label} {first.dataset} {first.protocol} "
        f"K={first.shots} seeds={seeds}"
    )


def run_grid(req: GridRequest, printer: Printer = print) -> GridSummary:
    """Resolve ``req``, run the cells that are not done yet, print and write the leaderboard."""
    runner = GridRunner(req, printer)
    runner.prepare()
    return runner.run()
