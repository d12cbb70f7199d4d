"""Per-cell result records: the schema, atomic writing and validated loading.

One JSON file per finished (or failed) grid cell, at ``<run_dir>/records/<cell_id>.json``.
Schema version 1::

    {
     "schema": 1,
     "key": {"backbone": str, "weights_sha256": str|null, "dataset": str,
             "protocol": str, "shots": int, "seed": int,
             "setting": str, "condition": str  (only in records of `eval --conditions`)},
     "status": "ok" | "failed" | "diverged", "error": str|null,
     "backbone": {"name", "arch", "weights", "weights_sha256", "load_report": {...}},
     "dataset": {"name", "root", "listing_sha256", "num_classes", "classnames", "num_test",
                 "fingerprint": {"version", "sha256", "method", "files", "bytes"}},
     "split": {"path": str (relative to the run folder when inside it), "sha256": str|null},
     "protocol": str, "shots": int, "seed": int,
     "config": {...resolved config, nested...}, "config_sha256": str,
     "metrics": {"accuracy": pct, "error": pct, "macro_f1": pct,
                 "per_class_accuracy": {classname: pct}, "confusion_matrix": [[int]],
                 ...protocol extras such as "chosen_C" or "knn": {"k=1": pct}},
     "timings": {"total_s": float, ...}, "device": str,
     "versions": {"sarfewshot", "torch", "timm", "numpy", "python"},
     "created": ISO-8601 UTC, "host": str|null,
     "source": "sarfewshot" | "dassl_log"  (optional; absent means "sarfewshot")
    }

A record's identity is its ``key``; two records with the same key, the same
``config_sha256`` and the same dataset version (:func:`dataset_version`) describe the same cell
(for example computed on two machines).

Statuses: ``ok``; ``failed`` (an error stopped the cell; the grid retries it); ``diverged``
(training ran but its loss became non-finite or ended far above where it started; ``error``
says which; not retried, since the same config diverges again, and left out of tables unless
asked for).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import platform
import re
import socket
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from sarfewshot.data.base import ID_CONDITION
from sarfewshot.errors import SarFewShotError
from sarfewshot.utils.confighash import config_fingerprint, jsonable
from sarfewshot.utils.io import PathLike, atomic_write_json

SCHEMA_VERSION = 1
RECORDS_DIRNAME = "records"
KEY_FIELDS = ("backbone", "weights_sha256", "dataset", "protocol", "shots", "seed")
STATUSES = ("ok", "failed", "diverged")
# optional key fields of a --conditions cell; a record without them reads as ID_CONDITION
CONDITION_FIELDS = ("setting", "condition")

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class RecordError(SarFewShotError, ValueError):
    """A record file is unreadable, not JSON, or does not follow the record schema."""


# ----------------------------------------------------------------------------- identity


def _safe_part(text: str) -> str:
    """A filesystem-safe rendering of ``text``; a hash suffix keeps altered names distinct."""
    cleaned = _SAFE.sub("-", text).strip("-.") or "x"
    if cleaned != text:
        cleaned += "-" + hashlib.sha256(text.encode()).hexdigest()[:6]
    return cleaned


def cell_id(key: Mapping[str, Any]) -> str:
    """Deterministic, filesystem-safe name of a cell.

    Example: ``sarjepa__1a2b3c4d5e6f__mstar__linear__k5__s1`` (``none`` without weights).
    """
    sha = key.get("weights_sha256")
    parts = (
        _safe_part(str(key["backbone"])),
        _safe_part(str(sha)[:12]) if sha else "none",
        _safe_part(str(key["dataset"])),
        _safe_part(str(key["protocol"])),
        f"k{int(key['shots'])}",
        f"s{int(key['seed'])}",
    )
    return "__".join(parts)


def key_tuple(key: Mapping[str, Any]) -> tuple:
    """The key as a hashable tuple in :data:`KEY_FIELDS` order."""
    return tuple(key.get(f) for f in KEY_FIELDS)


def record_path(run_dir: PathLike, key: Mapping[str, Any]) -> Path:
    """Where the record of ``key`` lives: ``<run_dir>/records/<cell_id>.json``."""
    return Path(run_dir) / RECORDS_DIRNAME / f"{cell_id(key)}.json"


def condition_of(record: Mapping[str, Any]) -> str:
    """The test condition a record was scored on: its key's (``--conditions``), else the
    out-of-distribution test set a plain run scored (``dataset.test_condition``), else the
    in-distribution condition ``id`` (plain runs, older records)."""
    dataset = record.get("dataset") or {}
    return str(record["key"].get("condition") or dataset.get("test_condition") or ID_CONDITION)


def setting_of(record: Mapping[str, Any]) -> str:
    """The dataset setting of a record: its key's ``setting``, else its dataset name."""
    return str(record["key"].get("setting") or record["key"]["dataset"])


def dataset_version(record: Mapping[str, Any]) -> str | None:
    """The dataset fingerprint a record was computed on (None for records without one)."""
    fingerprint = (record.get("dataset") or {}).get("fingerprint")
    return fingerprint.get("sha256") if isinstance(fingerprint, Mapping) else None


# ----------------------------------------------------------------------------- metadata


def utc_now() -> str:
    """The current time, ISO-8601 in UTC with an explicit offset."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def parse_created(text: str) -> _dt.datetime:
    """Parse a record's ``created`` stamp (``Z`` or an offset; naive stamps count as UTC)."""
    stamp = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_dt.timezone.utc)
    return stamp


def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def collect_versions() -> dict[str, str]:
    """Versions of the packages that shape a result (``"not installed"`` when absent).

    Read from the installed distributions' metadata, so torch and timm are not imported.
    """
    from sarfewshot import __version__

    versions = {"sarfewshot": __version__, "python": platform.python_version()}
    for name in ("torch", "timm", "numpy"):
        versions[name] = _dist_version(name)
    return versions


# ----------------------------------------------------------------------------- building


def make_record(
    *,
    backbone: Mapping[str, Any],
    dataset: Mapping[str, Any],
    split: Mapping[str, Any],
    protocol: str,
    shots: int,
    seed: int,
    config: Mapping[str, Any],
    config_sha256: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    timings: Mapping[str, Any] | None = None,
    device: str = "cpu",
    status: str = "ok",
    error: str | None = None,
    versions: Mapping[str, str] | None = None,
    created: str | None = None,
    host: str | None = None,
    source: str | None = None,
    extra: Mapping[str, Any] | None = None,
    key_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build and validate one schema-1 record.

    Args:
        backbone: ``name``, ``arch``, ``weights`` (path or None), ``weights_sha256`` (or None),
            ``load_report`` (missing/unexpected keys etc.).
        dataset: ``name``, ``root``, ``listing_sha256``, ``num_classes``, ``classnames``,
            ``num_test``.
        split: ``path`` and ``sha256`` of the split file (see :func:`write_record` for paths).
        protocol, shots, seed: the rest of the cell key.
        config: the resolved config as nested dicts.
        config_sha256: defaults to :func:`config_fingerprint` of ``config``.
        metrics: for ``status="ok"`` at least ``accuracy`` (percent); protocol extras allowed.
        timings: seconds, at least ``total_s`` when known.
        device, status, error: ``status="failed"`` needs an ``error`` message.
        versions, created, host: default to :func:`collect_versions`, now (UTC), this host.
        source: origin marker (``"dassl_log"`` for records read from Dassl logs).
        extra: further top-level fields (they may not replace schema fields).
        key_extra: further key fields: ``setting`` and ``condition`` of a ``--conditions``
            cell (absent from other records, whose keys and files stay as they were).

    Returns:
        The record dict, ready for :func:`write_record`.

    Raises:
        RecordError: when the fields do not follow the schema.
    """
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "key": _record_key(backbone, dataset, protocol, shots, seed),
        "status": status,
        "error": error,
        "backbone": _plain(backbone, "backbone"),
        "dataset": _plain(dataset, "dataset"),
        "split": _plain(split, "split"),
        "protocol": protocol,
        "shots": shots,
        "seed": seed,
        "config": _plain(config, "config"),
        "config_sha256": config_sha256 or config_fingerprint(config),
        "metrics": _plain(metrics or {}, "metrics"),
        "timings": _plain(timings or {}, "timings"),
        "device": device,
        **_provenance(versions, created, host),
    }
    _add_key_extra(record, key_extra or {})
    _add_extra(record, {"source": source} if source is not None else {})
    _add_extra(record, extra or {})
    validate_record(record, "<new record>")
    return record


def _record_key(
    backbone: Mapping[str, Any],
    dataset: Mapping[str, Any],
    protocol: str,
    shots: int,
    seed: int,
) -> dict[str, Any]:
    """The cell key of a record (before any ``key_extra`` fields)."""
    return {
        "backbone": backbone.get("name"),
        "weights_sha256": backbone.get("weights_sha256"),
        "dataset": dataset.get("name"),
        "protocol": protocol,
        "shots": shots,
        "seed": seed,
    }


def _provenance(
    versions: Mapping[str, str] | None, created: str | None, host: str | None
) -> dict[str, Any]:
    """``versions``, ``created`` and ``host``, defaulting to this environment, now and here."""
    return {
        "versions": dict(versions) if versions is not None else collect_versions(),
        "created": created or utc_now(),
        "host": host if host is not None else socket.gethostname(),
    }


def _add_key_extra(record: dict[str, Any], key_extra: Mapping[str, Any]) -> None:
    """Add further key fields; the schema's own key fields may not be replaced."""
    for name, value in key_extra.items():
        if name in record["key"]:
            raise RecordError(f"invalid record <new record>: key field {name!r} is reserved")
        record["key"][name] = value


def _plain(obj: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A JSON-only copy (numpy scalars/arrays and tuples converted); NaN/inf are refused so a
    cell with a non-finite result is recorded as failed rather than as a number."""
    try:
        return json.loads(json.dumps(obj, default=jsonable, allow_nan=False))
    except ValueError:
        raise RecordError(
            f"invalid record <new record>: {what} holds a non-finite number (NaN or inf); "
            "record such a cell with status='failed'"
        ) from None


def _add_extra(record: dict[str, Any], fields: Mapping[str, Any]) -> None:
    for name, value in fields.items():
        if name in record:
            raise RecordError(f"invalid record <new record>: field {name!r} is reserved")
        record[name] = value


# ----------------------------------------------------------------------------- validation


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise RecordError(f"invalid record {where}: {what}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _opt_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _check_key(key: Any, where: str) -> None:
    _need(isinstance(key, dict), where, "'key' must be an object")
    missing = [f for f in KEY_FIELDS if f not in key]
    _need(not missing, where, f"'key' lacks {missing}")
    for field in ("backbone", "dataset", "protocol"):
        _need(isinstance(key[field], str) and key[field] != "", where, f"key.{field} not a name")
    _need(_opt_str(key["weights_sha256"]), where, "key.weights_sha256 must be a string or null")
    for field in ("shots", "seed"):
        _need(_is_int(key[field]), where, f"key.{field} must be an integer")
    for field in CONDITION_FIELDS:
        if field in key:
            _need(isinstance(key[field], str) and key[field] != "", where, f"key.{field} empty")


def _check_sections(record: Mapping[str, Any], where: str) -> None:
    key = record["key"]
    for section in ("backbone", "dataset", "split", "config", "metrics", "timings", "versions"):
        _need(isinstance(record.get(section), dict), where, f"'{section}' must be an object")
    for field in ("protocol", "shots", "seed"):
        _need(record.get(field) == key[field], where, f"'{field}' differs from key.{field}")
    _need(record["backbone"].get("name") == key["backbone"], where, "backbone.name != key")
    _need(
        record["backbone"].get("weights_sha256") == key["weights_sha256"],
        where,
        "backbone.weights_sha256 != key.weights_sha256",
    )
    _need(record["dataset"].get("name") == key["dataset"], where, "dataset.name != key")
    _need(_opt_str(record["split"].get("sha256")), where, "split.sha256 must be a string or null")
    _need(isinstance(record.get("config_sha256"), str), where, "'config_sha256' missing")
    _need(isinstance(record.get("device"), str), where, "'device' must be a string")
    _need(_opt_str(record.get("host")), where, "'host' must be a string or null")
    _need(_opt_str(record.get("source")), where, "'source' must be a string")
    try:
        parse_created(record.get("created"))  # type: ignore[arg-type]
    except (TypeError, ValueError, AttributeError):
        raise RecordError(f"invalid record {where}: 'created' is not an ISO-8601 time") from None


def _check_metrics(record: Mapping[str, Any], where: str) -> None:
    metrics = record["metrics"]
    if record["status"] != "ok":
        _need(
            isinstance(record.get("error"), str),
            where,
            f"a {record['status']} record needs an 'error'",
        )
        return
    acc = metrics.get("accuracy")
    _need(_is_num(acc) and 0.0 <= acc <= 100.0, where, "metrics.accuracy must be in [0, 100]")
    for name in ("error", "macro_f1"):
        if name in metrics:
            _need(_is_num(metrics[name]), where, f"metrics.{name} must be a finite number")
    pca = metrics.get("per_class_accuracy")
    if pca is not None:
        _need(
            isinstance(pca, dict) and all(_is_num(v) for v in pca.values()),
            where,
            "metrics.per_class_accuracy must map class names to numbers",
        )
    cmat = metrics.get("confusion_matrix")
    if cmat is not None:
        ok = isinstance(cmat, list) and all(
            isinstance(row, list) and len(row) == len(cmat) and all(_is_num(v) for v in row)
            for row in cmat
        )
        _need(ok, where, "metrics.confusion_matrix must be a square list of number lists")


def validate_record(record: Any, where: str = "<record>") -> None:
    """Raise :class:`RecordError` (naming ``where``) unless ``record`` follows schema 1."""
    _need(isinstance(record, dict), where, "not a JSON object")
    schema = record.get("schema")
    _need(
        schema == SCHEMA_VERSION,
        where,
        f"schema version {schema!r} (this toolkit reads {SCHEMA_VERSION})",
    )
    _check_key(record.get("key"), where)
    _need(record.get("status") in STATUSES, where, f"'status' must be one of {STATUSES}")
    _need(_opt_str(record.get("error")), where, "'error' must be a string or null")
    _check_sections(record, where)
    _check_metrics(record, where)


# ----------------------------------------------------------------------------- I/O


def _relative_split(record: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """A copy of ``record`` whose split path is relative to ``run_dir`` when inside it."""
    out = dict(record)
    split = dict(record.get("split") or {})
    path = split.get("path")
    if isinstance(path, str) and Path(path).is_absolute():
        # outside the run folder relative_to raises: the path then stays absolute
        with contextlib.suppress(ValueError):
            split["path"] = Path(path).resolve().relative_to(run_dir.resolve()).as_posix()
    out["split"] = split
    return out


def write_record(run_dir: PathLike, record: Mapping[str, Any]) -> Path:
    """Validate ``record`` and write it atomically to :func:`record_path`.

    The JSON goes to a temporary file in the same folder, then replaces the target, so two
    processes writing the same cell leave the last complete record, never a torn file.

    Returns:
        The record's path.
    """
    run_dir = Path(run_dir)
    validate_record(record, f"for {run_dir}")
    out = _relative_split(record, run_dir)
    path = record_path(run_dir, out["key"])
    atomic_write_json(path, out)
    return path


def read_record(path: PathLike) -> dict[str, Any]:
    """Load and validate one record file.

    Raises:
        RecordError: naming ``path`` when it is unreadable, not JSON or not a schema-1 record.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecordError(f"cannot read record {path}: {exc.strerror or exc}") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(
            f"record {path} is not valid JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    validate_record(record, str(path))
    return record


def _is_record_file(path: Path) -> bool:
    # atomic_write_* temp files are hidden and end in .tmp; skip both kinds of leftovers.
    return path.is_file() and not path.name.startswith(".") and path.suffix == ".json"


def record_files(run_dir: PathLike) -> list[Path]:
    """Every record file under ``run_dir`` (any depth, in ``records/`` folders), sorted."""
    root = Path(run_dir)
    found = [p for p in root.rglob(f"{RECORDS_DIRNAME}/*.json") if _is_record_file(p)]
    return sorted(found)


def iter_records(dirs: Iterable[PathLike]) -> Iterator[dict[str, Any]]:
    """Yield the validated records of any number of run folders, folder by folder, sorted.

    Raises:
        RecordError: on the first invalid record file (its path in the message).
    """
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    for run_dir in dirs:
        for path in record_files(run_dir):
            yield read_record(path)


def record_exists(
    run_dir: PathLike,
    key: Mapping[str, Any],
    *,
    include_failed: bool = False,
    config_sha256: str | None = None,
) -> bool:
    """Whether the cell ``key`` is done in ``run_dir``.

    Args:
        run_dir: the run folder.
        key: the cell key.
        include_failed: count a failed record as done too.
        config_sha256: when given, a record computed with another config does not count.

    Returns:
        True for a valid record of that key (status ok unless ``include_failed``); an invalid
        or half-written file counts as absent, so the cell is recomputed.
    """
    path = record_path(run_dir, key)
    if not path.is_file():
        return False
    try:
        record = read_record(path)
    except RecordError:
        return False
    if key_tuple(record["key"]) != key_tuple(key):
        return False  # a sanitised-name collision, not this cell
    if config_sha256 is not None and record["config_sha256"] != config_sha256:
        return False
    return record["status"] == "ok" or include_failed
