"""Read Dassl/CoOp run folders (``log.txt`` result blocks) as records.

A Dassl trainer prints, after ``Finish training``, the test result block::

    => result
    * total: 1,000
    * correct: 733
    * accuracy: 73.3%
    * error: 26.7%
    * macro_f1: 72.9%

CoOp's ``parse_test_res.py`` reads that block per seed folder. Here each such log becomes a
schema-1 record with ``"source": "dassl_log"`` so it joins the same tables. The numbers are the
log's one-decimal roundings, so rows built from them aggregate rounded accuracies.

Where the cell key comes from, first match wins:

- the config dump Dassl prints after ``** Config **`` (nested yacs text) or flat dotted lines
  such as ``DATASET.NAME: MSTAR_SOC``: ``DATASET.NAME``, ``TRAINER.NAME``,
  ``DATASET.NUM_SHOTS``, ``SEED``, ``MODEL.BACKBONE.NAME``;
- the ``** Arguments **`` block (``trainer``, ``seed``, ``dataset_config_file``);
- the folder names, CoOp style: ``<dataset>/<trainer>/<cfg>_<K>shots/.../seed<S>/log.txt``
  (also ``shots_<K>`` and ``seed_<S>``).

The backbone is ``MODEL.BACKBONE.NAME`` when the log shows one, else ``"dassl"``.
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

from sarfewshot.results.records import (
    config_fingerprint,
    make_record,
)
from sarfewshot.utils.io import PathLike, sha256_file

__all__ = ["DasslLogWarning", "find_dassl_logs", "parse_dassl_log", "records_from_dassl_runs"]

SOURCE = "dassl_log"
_FINISH = "Finish training"
_RESULT = "=> result"
_STAT = re.compile(r"^\*\s*(total|correct|accuracy|error|macro_f1):\s*([-0-9.,]+)\s*%?\s*$")
_PER_CLASS = re.compile(
    r"^\*\s*class:\s*(\d+)\s*\((.*)\)\s+total:\s*[\d,]+\s+correct:\s*[\d,]+\s+acc:\s*([\d.]+)%"
)
_EPOCH = re.compile(r"^epoch \[\d+/\d+\]")
_NESTED = re.compile(r"^( *)([A-Za-z0-9_]+):(?: (.*))?$")
_FLAT = re.compile(r"^([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)+)\s*[:=]\s*(.*?)\s*$")
_ARG = re.compile(r"^([a-z_][a-z0-9_]*):\s*(.*?)\s*$")
_SHOTS_SUFFIX = re.compile(r"_?(\d+)shots?$")
_SHOTS_PREFIX = re.compile(r"^shots?_?(\d+)$")
_SEED = re.compile(r"^seed_?(-?\d+)$")


class DasslLogWarning(UserWarning):
    """A Dassl log could not be turned into a record (the message says why)."""


# ----------------------------------------------------------------------------- parsing


def _read_block(lines: Sequence[str], start: int) -> dict[str, Any]:
    """The ``* name: value`` lines right after ``=> result`` at ``start``."""
    stats: dict[str, Any] = {}
    for line in lines[start + 1 :]:
        m = _STAT.match(line.strip())
        if not m:
            break
        value = m.group(2).replace(",", "")
        stats[m.group(1)] = int(value) if m.group(1) in ("total", "correct") else float(value)
    return stats


def _per_class(lines: Sequence[str], start: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("=> ") and stripped != "=> per-class result":
            break
        m = _PER_CLASS.match(stripped)
        if m:
            out[m.group(2) or m.group(1)] = float(m.group(3))
    return out


def _convert(text: str | None) -> Any:
    if text is None:
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text.strip("'\""))


def _after_banner(lines: Sequence[str], start: int) -> Sequence[str]:
    """The lines after a ``** Title **`` header, past Dassl's ``*****`` frame line."""
    i = start + 1
    while i < len(lines) and lines[i].strip() and set(lines[i].strip()) == {"*"}:
        i += 1
    return lines[i:]


def _parse_nested(lines: Sequence[str], flat: dict[str, Any]) -> None:
    """Fill ``flat`` from yacs's indented dump; stops at the first line that is not part of it.

    yacs prints an empty string as ``KEY:`` like a node; such a "node" without children is
    recorded as ``""``.
    """
    stack: list[tuple[int, str]] = []
    open_node: tuple[int, str] | None = None
    for line in lines:
        m = _NESTED.match(line.rstrip())
        if not m:
            break
        indent, name = len(m.group(1)), m.group(2)
        if open_node is not None and indent <= open_node[0]:
            flat[_dotted(stack)] = ""
        stack = [(i, n) for i, n in stack if i < indent]
        if m.group(3) is None:
            stack.append((indent, name))
            open_node = (indent, name)
        else:
            flat[_dotted(stack, name)] = _convert(m.group(3))
            open_node = None
    if open_node is not None:
        flat[_dotted(stack)] = ""


def _dotted(stack: Sequence[tuple[int, str]], leaf: str | None = None) -> str:
    names = [n for _, n in stack]
    return ".".join(names + [leaf] if leaf else names)


def _parse_config(lines: Sequence[str]) -> dict[str, Any]:
    """Flat ``{"DATASET.NAME": value}`` from the nested dump and any flat dotted lines."""
    flat: dict[str, Any] = {}
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "** Config **")
    except StopIteration:
        start = None
    if start is not None:
        _parse_nested(_after_banner(lines, start), flat)
    for line in lines:
        m = _FLAT.match(line.strip())
        if m:
            flat.setdefault(m.group(1), _convert(m.group(2)))
    return flat


def _parse_args(lines: Sequence[str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "** Arguments **")
    except StopIteration:
        return args
    for line in _after_banner(lines, start):
        m = _ARG.match(line.strip())
        if not m:
            break
        args[m.group(1)] = _convert(m.group(2))
    return args


def _result_index(lines: Sequence[str], args: dict[str, Any]) -> int | None:
    """The line of the test result block: the first after the last ``Finish training``; for
    eval-only logs (no training epochs printed) the last block; None for unfinished runs."""
    finish = [i for i, ln in enumerate(lines) if ln.strip() == _FINISH]
    blocks = [i for i, ln in enumerate(lines) if ln.strip() == _RESULT]
    if finish:
        after = [i for i in blocks if i > finish[-1]]
        return after[0] if after else None
    trained = any(_EPOCH.match(ln.strip()) for ln in lines)
    if blocks and (args.get("eval_only") is True or not trained):
        return blocks[-1]
    return None


def parse_dassl_log(path: PathLike) -> dict[str, Any] | None:
    """Parse one Dassl ``log.txt``.

    Returns:
        None when the log has no test result block (e.g. an unfinished run); otherwise
        ``{"total", "correct", "accuracy", "error", "macro_f1"}`` (those present),
        ``"per_class_accuracy"`` when printed, ``"config"`` (flat dotted keys), ``"args"`` and
        ``"eval_only"``.
    """
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    args = _parse_args(lines)
    idx = _result_index(lines, args)
    if idx is None:
        return None
    stats = _read_block(lines, idx)
    if "accuracy" not in stats:
        return None
    out: dict[str, Any] = dict(stats)
    per_class = _per_class(lines, idx)
    if per_class:
        out["per_class_accuracy"] = per_class
    out["config"] = _parse_config(lines)
    out["args"] = args
    out["eval_only"] = not any(ln.strip() == _FINISH for ln in lines)
    return out


# ----------------------------------------------------------------------------- conversion


def find_dassl_logs(dirs: Iterable[PathLike]) -> list[Path]:
    """Every Dassl log under ``dirs``: ``log.txt``, or its newest ``log.txt-<time>`` sibling
    that holds a result block (Dassl renames logs when a folder is reused).

    Folders whose logs hold no result block (unfinished or failed runs) are named in one
    :class:`DasslLogWarning`.
    """
    found: list[Path] = []
    unfinished: list[Path] = []
    for root in dirs:
        folders = sorted({p.parent for p in Path(root).rglob("log.txt*") if p.is_file()})
        for folder in folders:
            candidates = sorted(p for p in folder.glob("log.txt*") if p.is_file())
            with_result = [p for p in candidates if _has_result(p)]
            if with_result:
                found.append(with_result[-1])
            else:
                unfinished.append(folder)
    if unfinished:
        warnings.warn(_unfinished_message(unfinished), DasslLogWarning, stacklevel=2)
    return found


def _unfinished_message(folders: Sequence[Path], shown: int = 5) -> str:
    names = ", ".join(str(f) for f in folders[:shown])
    more = f" and {len(folders) - shown} more" if len(folders) > shown else ""
    return (
        f"skipped {len(folders)} unfinished Dassl run folder(s) (log.txt without a result "
        f"block): {names}{more}"
    )


def _has_result(path: Path) -> bool:
    try:
        return parse_dassl_log(path) is not None
    except OSError:
        return False


def _from_path(path: Path) -> dict[str, Any]:
    """dataset/trainer/shots/seed guessed from CoOp-style folder names.

    ``<dataset>/<trainer>/<cfg>_<K>shots/.../seed<S>`` (few-shot scripts) and
    ``<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>`` (base-to-new scripts).
    """
    parts = path.parent.parts
    out: dict[str, Any] = {}
    for i, part in enumerate(parts):
        m = _SEED.match(part)
        if m:
            out["seed"] = int(m.group(1))
        m = _SHOTS_SUFFIX.search(part)
        if m and i >= 2:
            out.update(shots=int(m.group(1)), trainer=parts[i - 1], dataset=parts[i - 2])
            out["cfg"] = part[: m.start()] or None
            continue
        m = _SHOTS_PREFIX.match(part)
        if m and i >= 1 and i + 1 < len(parts):
            out.update(shots=int(m.group(1)), dataset=parts[i - 1], trainer=parts[i + 1])
            nxt = parts[i + 2] if i + 2 < len(parts) else ""
            out["cfg"] = nxt if nxt and not _SEED.match(nxt) else None
    return out


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "")), None)


def _cell_fields(path: Path, parsed: dict[str, Any]) -> dict[str, Any]:
    cfg, args, guess = parsed["config"], parsed["args"], _from_path(path)
    dcf = args.get("dataset_config_file")
    seed_cfg = cfg.get("SEED")
    return {
        "dataset": _first(cfg.get("DATASET.NAME"), guess.get("dataset"), dcf and Path(dcf).stem),
        "protocol": _first(cfg.get("TRAINER.NAME"), args.get("trainer"), guess.get("trainer")),
        "shots": _first(cfg.get("DATASET.NUM_SHOTS"), guess.get("shots")),
        "seed": _first(
            seed_cfg if isinstance(seed_cfg, int) and seed_cfg >= 0 else None,
            args.get("seed"),
            guess.get("seed"),
        ),
        "backbone": _first(cfg.get("MODEL.BACKBONE.NAME"), "dassl"),
        "cfg_name": guess.get("cfg"),
    }


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):  # a flat line clashing with a nested node
                break
            node = nxt
        else:
            node[leaf] = value
    return tree


# The release's Dassl names and the toolkit's registry names of the same datasets and
# protocols; a plain table, so the results layer need not import the registries.
RELEASE_NAMES = {
    "mstar_soc": "mstar_soc",
    "new_fusar": "fusar_ship",
    "sar_acd": "sar_acd",
    "mim_finetune": "finetune",
    "mim_linear": "linear",
}


def canonical_name(name: str) -> str:
    """Map a release name (``MSTAR_SOC``, ``MIM_linear``) to the toolkit's; others unchanged."""
    return RELEASE_NAMES.get(name.lower(), name)


def record_from_dassl_log(path: PathLike) -> dict[str, Any] | None:
    """One record (status ok, ``source`` ``"dassl_log"``) from a Dassl log, or None when the
    log has no result block or its cell (dataset, trainer, shots, seed) cannot be told."""
    path = Path(path)
    parsed = parse_dassl_log(path)
    if parsed is None:
        return None
    cell = _cell_fields(path, parsed)
    missing = [k for k in ("dataset", "protocol", "shots", "seed") if cell[k] is None]
    if missing or not all(isinstance(cell[k], int) for k in ("shots", "seed")):
        warnings.warn(
            f"{path}: cannot tell the cell's {missing or 'shots/seed'}; skipped",
            DasslLogWarning,
            stacklevel=2,
        )
        return None
    config = _nest(parsed["config"])
    if cell["cfg_name"] and not config:
        config = {"CFG_NAME": cell["cfg_name"]}  # the folder's config name is all we know
    metrics = {
        k: parsed[k] for k in ("accuracy", "error", "macro_f1", "total", "correct") if k in parsed
    }
    if "per_class_accuracy" in parsed:
        metrics["per_class_accuracy"] = parsed["per_class_accuracy"]
    mtime = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc)
    return make_record(
        backbone={
            "name": str(cell["backbone"]),
            "arch": None,
            "weights": None,
            "weights_sha256": None,
            "load_report": {},
        },
        dataset={
            "name": canonical_name(str(cell["dataset"])),
            "root": parsed["config"].get("DATASET.ROOT"),
            "listing_sha256": None,
            "num_classes": None,
            "classnames": [],
            "num_test": parsed.get("total"),
        },
        split={"path": None, "sha256": None},
        protocol=canonical_name(str(cell["protocol"])),
        shots=cell["shots"],
        seed=cell["seed"],
        config=config,
        config_sha256=config_fingerprint(config),
        metrics=metrics,
        timings={},
        device="unknown",
        versions={"sarfewshot": None},
        created=mtime.isoformat(),
        host=None,
        source=SOURCE,
        extra={"log": {"path": str(path), "sha256": sha256_file(path)}},
    )


def records_from_dassl_runs(dirs: Iterable[PathLike]) -> list[dict[str, Any]]:
    """Records for every finished Dassl/CoOp run found under ``dirs`` (see the module doc).

    Logs whose cell cannot be told are skipped with a :class:`DasslLogWarning`.
    """
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    records = []
    for log in find_dassl_logs(dirs):
        record = record_from_dassl_log(log)
        if record is not None:
            records.append(record)
    return records
