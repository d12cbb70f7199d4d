"""Recording: one record per cell (metrics, timings, split, execution), and the leaderboard."""

from __future__ import annotations

import os
import traceback
import warnings
from pathlib import Path
from typing import Any, Sequence

from sarfewshot.data.base import ID_CONDITION
from sarfewshot.engine.grid.config import cfg_dict
from sarfewshot.engine.grid.data import Workspace, eval_items, split_file
from sarfewshot.engine.grid.plan import Cell, GridSummary, Printer
from sarfewshot.engine.grid.resolve import ResolvedBackbone, ResolvedDataset
from sarfewshot.errors import SarFewShotError


def cell_label(cell: Cell, backbones: Sequence[ResolvedBackbone]) -> str:
    """``backbone dataset protocol K=k seed=s``: how progress lines name a cell."""
    from sarfewshot.results.export import shots_text

    return (
        f"{backbones[cell.backbone].label} {cell.dataset} {cell.protocol} "
        f"K={shots_text(cell.shots)} seed={cell.seed}"
    )


def cell_record(
    ws: Workspace,
    cell: Cell,
    split: Any,
    metrics: dict,
    timings: dict,
    error: str | None = None,
    status: str = "ok",
    execution: dict[str, Any] | None = None,
    condition: str | None = None,
    split_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The cell's record; ``execution`` says which executor ran it and in how large a group;
    ``condition`` names the test set of a ``--conditions`` cell the metrics belong to (None:
    the cell's first, or only, test set); ``split_info``: :func:`split_section`, when the
    caller writes several records of one split."""
    from sarfewshot.results.records import make_record

    ds, bb = ws.datasets[cell.dataset], ws.backbones[cell.backbone]
    if condition is None and cell.conditions:
        condition = cell.conditions[0].name
    if split_info is None:
        split_info = split_section(ws, cell, split)
    return make_record(
        backbone={**_backbone_section(bb), "precision": str(cell.cfg.MODEL.PRECISION)},
        dataset=_dataset_section(ds, cell, split, condition),
        split=split_info,
        protocol=cell.protocol,
        shots=cell.shots,
        seed=cell.seed,
        config=cfg_dict(cell.cfg),
        config_sha256=cell.fingerprint,
        metrics=metrics,
        timings=timings,
        device=_device_name(ws.device),
        status=status,
        error=error,
        extra={
            "execution": execution or {"executor": "serial", "group_size": 1},
            "contamination": _contamination(bb, ds, cell, split, condition),
        },
        key_extra=_condition_fields(cell, condition),
    )


def split_section(ws: Workspace, cell: Cell, split: Any) -> dict[str, Any]:
    """The record's split: its file, hash and support counts (None, None without a split)."""
    if split is None:
        return {"path": None, "sha256": None}
    return {
        "path": split_file(cell.cfg, ws.datasets[cell.dataset], ws.output, split),
        "sha256": split.sha256(),
        "support_counts": split.support_counts(),  # the real K per class
    }


def _condition_fields(cell: Cell, condition: str | None) -> dict[str, Any]:
    if condition is None:
        return {}
    key = cell.condition_keys[condition]
    return {"setting": key["setting"], "condition": key["condition"]}


def outcome_records(
    ws: Workspace,
    cell: Cell,
    split: Any,
    outcome: Any,
    timings: dict,
    num_classes: int,
    execution: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The records of a protocol's outcome: the test slot's, then one per extra condition."""
    from sarfewshot.engine.protocol import divergence

    scored = [(None, outcome.metrics)] + list(outcome.conditions.items())
    split_info = split_section(ws, cell, split)  # one split: hashed once for every condition
    records = []
    for condition, metrics in scored:
        reason = divergence(metrics, num_classes)
        status = "diverged" if reason else "ok"
        records.append(
            cell_record(
                ws, cell, split, metrics, timings, reason, status, execution, condition, split_info
            )
        )
    return records


def failed_records(
    ws: Workspace,
    cell: Cell,
    message: str,
    seconds: float,
    status: str = "failed",
    execution: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """A failed (or diverged) cell's records (one per condition): the message, no metrics."""
    try:
        split = ws.split(cell)
    except Exception:  # noqa: BLE001 - the failure itself may have been the split
        split = None
    return unscored_records(ws, cell, split, {"total_s": seconds}, message, status, execution)


def unscored_records(
    ws: Workspace,
    cell: Cell,
    split: Any,
    timings: dict,
    message: str,
    status: str,
    execution: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Records without metrics (failed or diverged), one per condition of the cell."""
    names = [c.name for c in cell.conditions] or [None]
    info = split_section(ws, cell, split)
    return [
        cell_record(ws, cell, split, {}, timings, message, status, execution, name, info)
        for name in names
    ]


def debug_traceback() -> None:
    """Print the current traceback under ``SARFEWSHOT_DEBUG=1`` (records keep one line)."""
    if os.environ.get("SARFEWSHOT_DEBUG", "") not in ("", "0"):
        traceback.print_exc()


# ----------------------------------------------------------------------------- leaderboard


def write_leaderboard(
    output: Path,
    command_keys: set[tuple],
    summary: GridSummary,
    printer: Printer,
    unfinished: list[str],
) -> None:
    """Write the folder's leaderboard CSV and print this command's table and unfinished cells."""
    from sarfewshot.results.aggregate import VersionConflictWarning, aggregate_records
    from sarfewshot.results.export import table_text, write_csv
    from sarfewshot.results.records import iter_records, key_tuple

    records = list(iter_records([output]))
    if not records:
        return
    # The CSV is the folder's leaderboard; the table shows only this command's cells (all
    # shards), so rows of other commands or of nested run folders do not leak into it.
    mine = [r for r in records if key_tuple(r["key"]) in command_keys]
    rows = aggregate_records(mine)  # warns about this command's version conflicts
    with warnings.catch_warnings():
        # the folder-wide rows repeat those warnings; their rows carry the marks anyway
        warnings.simplefilter("ignore", VersionConflictWarning)
        folder_rows = aggregate_records(records)
    summary.leaderboard_csv = write_csv(folder_rows, output / "leaderboard.csv")
    if rows:
        summary.table = table_text(rows)
        printer(summary.table)
    others = len(records) - len(mine)
    extra = f" (also holds {others} record(s) of other commands)" if others else ""
    printer(f"leaderboard: {summary.leaderboard_csv}{extra}")
    _write_robustness(output, records, mine, printer)
    if unfinished:
        printer(
            f"{len(unfinished)} cell(s) of this command have no result (recorded; failed "
            "cells are retried by the next run, diverged ones are not):"
        )
        for line in unfinished:
            printer(f"  {line}")


def _write_robustness(output: Path, records: list, mine: list, printer: Printer) -> None:
    """For a folder with condition records: this command's robustness table, and the folder's
    as ``<output>/robustness.csv``."""
    from sarfewshot.results.robustness import (
        has_conditions,
        robustness_rows,
        robustness_text,
        write_robustness_csv,
    )

    if not has_conditions(records):
        return
    if has_conditions(mine):
        printer(robustness_text(robustness_rows(mine)))
    path = write_robustness_csv(robustness_rows(records), output / "robustness.csv")
    printer(f"robustness: {path}")


def unfinished_cells(
    output: Path, cells: Sequence[Cell], backbones: Sequence[ResolvedBackbone]
) -> list[str]:
    """``label: status: reason`` of the cells whose record is failed or diverged."""
    from sarfewshot.results.records import RecordError, read_record, record_path

    lines = []
    for cell in cells:
        for key in cell.keys:
            path = record_path(output, key)
            try:
                record = read_record(path) if path.is_file() else None
            except RecordError:
                continue
            if record is not None and record["status"] != "ok":
                label = cell_label(cell, backbones)
                if "condition" in key:
                    label += f" condition={key['condition']}"
                lines.append(f"{label}: {record['status']}: {record['error']}")
    return lines


# ----------------------------------------------------------------------------- sections


def _backbone_section(bb: ResolvedBackbone) -> dict[str, Any]:
    info = bb.info
    section = {
        "name": bb.label,
        "arch": info.get("arch"),
        "arch_source": info.get("arch_source"),
        "input": info.get("input"),  # the model's own input adaptation (channels, normalisation)
        "feature": info.get("feature"),  # which tensor the classifier head receives
        "weights": info.get("weights"),
        "weights_sha256": info.get("weights_sha256"),
        "load_report": info.get("load"),
        "registry_name": bb.request.name,
        "num_features": bb.num_features,
    }
    if info.get("init_seed") is not None:
        section["init_seed"] = info["init_seed"]
    return section


def _dataset_section(
    ds: ResolvedDataset, cell: Cell, split: Any, condition: str | None = None
) -> dict[str, Any]:
    """The record's dataset: the key's name (``mstar_soc:val`` when the cell is scored on the
    validation pool), the part scored and ``num_test``, the number of images scored. A plain
    run of a setting whose test set is out of distribution names it (``test_condition``, read
    by :func:`sarfewshot.results.records.condition_of`). A condition's record adds the
    setting, the condition, what it is and, for a condition outside the listing, that set's
    fingerprint."""
    part = str(cell.cfg.TEST.SPLIT)
    scored = len(eval_items(split, part, ds.name)[1]) if split is not None else len(ds.listing.test)
    missing = ds.listing.extra.get("missing_classes")  # DATASET.SAR.ALLOW_MISSING_CLASSES
    name = cell.key["dataset"]
    more: dict[str, Any] = {}
    if condition is None and part == "test":
        plain = ds.obj.plain_condition()
        if plain != ID_CONDITION:  # an out-of-distribution test set, named for the tables
            more["test_condition"] = plain
    if condition is not None:
        cond = next(c for c in cell.conditions if c.name == condition)
        name, part = cell.condition_keys[condition]["dataset"], cond.part
        scored = _condition_size(ds, cond, split, scored)
        more = {"setting": ds.split_name or ds.name, "condition": condition, "what": cond.what}
        if cond.part == "extra":
            more["condition_fingerprint"] = ds.extra_sets[condition].fingerprint.to_dict()
    return {
        "name": name,
        "eval_split": part,
        "root": str(ds.listing.root),
        "listing_sha256": ds.listing_sha256,
        "fingerprint": ds.fingerprint.to_dict() if ds.fingerprint is not None else None,
        "num_classes": len(ds.listing.classnames),
        "classnames": list(ds.listing.classnames),
        "num_test": scored,
        **({"missing_classes": missing} if missing else {}),
        **more,
    }


def _scored_items(ds: ResolvedDataset, cell: Cell, split: Any, condition: str | None) -> tuple:
    """(root, items) of the images a record's metrics were scored on."""
    cond = next((c for c in cell.conditions if c.name == condition), None)
    if cond is not None and cond.part == "extra":
        extra = ds.extra_sets[cond.name].listing
        return str(extra.root), extra.test
    part = cond.part if cond is not None else str(cell.cfg.TEST.SPLIT)
    items = eval_items(split, part, ds.name)[1] if split is not None else ds.listing.test
    return str(ds.listing.root), items


def _contamination(
    bb: ResolvedBackbone, ds: ResolvedDataset, cell: Cell, split: Any, condition: str | None
) -> dict:
    """How many of the scored images the backbone saw in pretraining (see .contamination)."""
    from sarfewshot.engine.grid.contamination import contamination

    try:
        root, items = _scored_items(ds, cell, split, condition)
        return contamination(bb.info, root, items)
    except (SarFewShotError, OSError):  # a failed cell's split or files may be the failure
        return {"seen": None, "scored": 0, "method": "unknown"}


def _condition_size(ds: ResolvedDataset, cond: Any, split: Any, default: int) -> int:
    if cond.part == "extra":
        return len(ds.extra_sets[cond.name].listing.test)
    if split is None:
        return default
    return len(split.val if cond.part == "val" else split.test)


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device
