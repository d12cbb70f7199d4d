"""The evaluation grid: every (backbone, dataset, protocol, K, seed) cell, sharded and resumable.

Work is shared wherever the result cannot change:

- each dataset's images are decoded and preprocessed once per preprocessing (the data layer's
  tensor cache, on disk under ``<output>/cache/images``) and indexed by every cell;
- frozen-backbone features are computed once per (backbone weights, dataset listing,
  preprocessing, input size, ``MODEL.PRECISION``) for the whole listing and cached as ``.npy`` under
  ``<output>/cache/features``; every feature-based cell of that backbone reads them, so the
  test-set features are shared by all of them;
- split files live in ``<output>/splits`` (or ``DATASET.SPLIT_DIR``) and are reused.

Every finished cell writes one record atomically (``sarfewshot.results.records``). A cell whose
record exists (status ok, same config fingerprint) is skipped, so a second identical command does
no work and an interrupted grid resumes; ``force`` recomputes. A failed cell (for example a
non-finite loss) is recorded as failed and retried on the next run; the grid goes on. User errors
(unknown names, a missing root or weights, K larger than every class) stop the grid before any
cell runs.
"""

from __future__ import annotations

import copy
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sarfewshot.engine.protocol import (
    REQUIRES_FEATURES,
    REQUIRES_IMAGES,
    CellContext,
    CellData,
    divergence,
    resolve_device,
)
from sarfewshot.errors import (
    ConfigError,
    DataVersionError,
    NonFiniteLossError,
    SarFewShotError,
    UnknownNameError,
)
from sarfewshot.utils.io import load_array, save_array, sha256_text
from sarfewshot.utils.progress import Heartbeat

DEFAULT_PROTOCOLS = ("finetune", "linear")
RANDOM_INIT_SEED = 0  # weight-less backbones are one fixed random init, so their cells compare
FEATURE_CACHE_VERSION = 2  # 2: keyed on the dataset fingerprint, not the file names

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
        shots: K values.
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


@dataclass
class Cell:
    """One grid cell and what it resolved to."""

    backbone: int  # index into the resolved backbones
    dataset: str  # canonical dataset name
    protocol: str  # canonical protocol name
    shots: int
    seed: int
    key: dict[str, Any] = field(default_factory=dict)
    cfg: Any = None
    fingerprint: str = ""


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


# ----------------------------------------------------------------------------- progress


def progress_enabled(requested: bool | None = None) -> bool:
    """Bars are on unless turned off, ``SARFEWSHOT_NO_PROGRESS=1``, or stderr is not a TTY."""
    if requested is not None:
        return requested
    if os.environ.get("SARFEWSHOT_NO_PROGRESS", "") not in ("", "0"):
        return False
    return sys.stderr.isatty()


class _Bars:
    """A bar for cells and a second one for the current cell's epochs."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.enabled = enabled
        self.cells = tqdm(total=total, desc="cells", unit="cell", disable=not enabled, position=0)
        self.epochs: Any = None
        self.beat = Heartbeat("cell", enabled=False)

    def start_cell(self, label: str) -> None:
        self.cells.set_postfix_str(label, refresh=False)
        self.close_epochs()
        self.beat = Heartbeat(label, unit="epoch")  # log lines when stdout is redirected

    def on_epoch(self, epoch: int, max_epoch: int) -> None:
        self.beat.total = max_epoch
        self.beat.update(epoch)
        if not self.enabled:
            return
        if self.epochs is None:
            self.epochs = self._tqdm(
                total=max_epoch, desc="  epochs", unit="ep", position=1, leave=False
            )
        self.epochs.n = epoch
        self.epochs.refresh()

    def close_epochs(self) -> None:
        if self.epochs is not None:
            self.epochs.close()
            self.epochs = None

    def end_cell(self) -> None:
        self.close_epochs()
        self.cells.update(1)

    def close(self) -> None:
        self.close_epochs()
        self.cells.close()


# ----------------------------------------------------------------------------- resolution


@dataclass
class ResolvedBackbone:
    """A backbone built once: a CPU template to copy per cell, and its identity."""

    request: BackboneRequest
    label: str  # the key's backbone name
    info: dict[str, Any]
    template: Any
    num_features: int

    def factory(self) -> Any:
        """A fresh, independent copy of the backbone (what a trained protocol modifies)."""
        return copy.deepcopy(self.template)


@dataclass
class ResolvedDataset:
    """A dataset listed once, with row maps from split entries into the shared tensors."""

    name: str
    obj: Any
    listing: Any
    listing_sha256: str
    train_rows: dict[str, int]
    test_rows: dict[str, int]
    split_name: str = ""  # the name split files and random streams use (a variant's name)
    fingerprint: Any = None  # DatasetFingerprint: the folder's version (files and contents)

    @property
    def version(self) -> str:
        """The fingerprint's sha256 (what records and caches are keyed on)."""
        return self.fingerprint.sha256 if self.fingerprint is not None else self.listing_sha256

    @property
    def paths(self) -> list[str]:
        """Absolute paths of every listed image: train pool first, then the test set."""
        return [self.listing.abspath(d) for d in (*self.listing.train, *self.listing.test)]


def backbone_label(req: BackboneRequest) -> str:
    """The name a backbone carries in keys and tables.

    A weight-less backbone with an explicit arch is labelled ``name@arch``: its key has no
    weights hash, so the label must tell different architectures apart.
    """
    return f"{req.name}@{req.arch}" if req.arch and not req.weights else req.name


def resolve_backbone(req: BackboneRequest, img_size: int) -> ResolvedBackbone:
    """Build the backbone once on CPU (weights loaded and hashed) and describe it."""
    from sarfewshot.models.registry import build_backbone

    model = build_backbone(
        req.name, weights=req.weights, arch=req.arch, img_size=img_size, seed=RANDOM_INIT_SEED
    )
    model.eval()
    info = dict(getattr(model, "backbone_info", {}) or {})
    info.setdefault("arch", req.arch)
    info.setdefault("weights", req.weights)
    info.setdefault("weights_sha256", None)
    info["name"] = backbone_label(req)
    info["registry_name"] = req.name
    if not info.get("weights"):
        info["init_seed"] = RANDOM_INIT_SEED
    return ResolvedBackbone(req, info["name"], info, model, int(model.num_features))


def resolve_dataset(
    name: str,
    root: str | None,
    options: dict[str, Any],
    memo_dir: Path | None = None,
    progress: bool = False,
) -> ResolvedDataset:
    """List and fingerprint a dataset (raising the data layer's errors on a bad root or layout).

    ``memo_dir`` keeps the per-file content hashes between runs (see
    :mod:`sarfewshot.data.fingerprint`).
    """
    from sarfewshot.data.build import build_listing, split_name
    from sarfewshot.data.fingerprint import dataset_fingerprint
    from sarfewshot.data.registry import DATASET_REGISTRY, get_dataset

    get_dataset(name)  # an unknown name lists the available ones
    canonical = DATASET_REGISTRY.canonical(name)
    if not root:
        raise ConfigError(
            f"dataset {canonical!r} needs a root folder: pass --root DIR or set DATASET.ROOT"
        )
    obj, listing = build_listing(canonical, root, **options)
    memo = None
    if memo_dir is not None:
        memo = Path(memo_dir) / f"{canonical}-{sha256_text(str(listing.root))[:12]}.json"
    return ResolvedDataset(
        name=canonical,
        obj=obj,
        listing=listing,
        listing_sha256=listing.sha256(),
        train_rows={d.impath: i for i, d in enumerate(listing.train)},
        test_rows={d.impath: len(listing.train) + i for i, d in enumerate(listing.test)},
        split_name=split_name(obj),
        fingerprint=dataset_fingerprint(listing, memo, progress),
    )


def check_output_outside(output: Path, root: str | None) -> None:
    """Refuse a run folder inside the dataset root: its records, caches and plots would be
    listed as images (a new class) by the next run. Checked before listing, symlinks resolved."""
    if not root:
        return
    data, out = Path(root).expanduser().resolve(), Path(output).expanduser().resolve()
    if out == data or data in out.parents:
        raise ConfigError(
            f"--output {output} lies inside the dataset root --root {root} (resolved: {out} "
            f"inside {data}); the run's own files would be read as data: choose an output "
            f"folder outside {data}"
        )


def resolve_protocol(name: str) -> type:
    """The protocol class registered as ``name`` (an unknown name lists the available ones)."""
    from sarfewshot.engine.registry import get_trainer

    try:
        cls = get_trainer(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"--protocol: {exc}") from None
    if not hasattr(cls, "run_cell"):
        raise ConfigError(f"trainer {name!r} is not an evaluation protocol usable by the grid")
    return cls


# ----------------------------------------------------------------------------- config


def build_protocol_cfg(
    req: GridRequest,
    protocol: type,
    backbone: BackboneRequest,
    dataset: ResolvedDataset,
    device: str = "cpu",
) -> Any:
    """The resolved config of one (protocol, backbone, dataset).

    Merge order: defaults and extensions -> the dataset's preset (its crop) -> the protocol's
    bundled YAML -> ``--config`` -> the command's flags -> trailing ``KEY VALUE`` options.
    """
    from sarfewshot.engine import config as C

    cfg = C.get_cfg_default()
    C.extend_cfg(cfg)
    crop = getattr(dataset.obj, "crop_size", None)
    cfg.INPUT.SAR.CROP = int(crop) if crop else 0
    explicit: set[str] = set()
    if protocol.preset:
        from sarfewshot.configs import config_path

        explicit |= C.merge_file(cfg, config_path(*protocol.preset))
    if req.config_file:
        explicit |= C.merge_file(cfg, req.config_file)
    cfg.TRAINER.NAME = protocol.name
    cfg.DATASET.NAME = dataset.name
    cfg.DATASET.ROOT = str(dataset.listing.root)
    cfg.OUTPUT_DIR = str(req.output)
    cfg.USE_CUDA = str(device).startswith("cuda")
    cfg.MODEL.BACKBONE.NAME = backbone.name
    cfg.MODEL.BACKBONE.ARCH = backbone.arch or ""
    cfg.MODEL.INIT_WEIGHTS = backbone.weights or ""
    if req.img_size:
        cfg.INPUT.SIZE = (int(req.img_size), int(req.img_size))
    explicit |= C.merge_opts(cfg, req.opts)
    if not req.feature_cache and "LINEAR" in cfg.TRAINER:
        cfg.TRAINER.LINEAR.FEATURE_CACHE = False  # the request's switch is the one source
    C.apply_channel_rule(cfg, explicit)
    C.check_cfg(cfg)
    cfg.freeze()
    return cfg


def cell_cfg(base: Any, shots: int, seed: int) -> Any:
    """A frozen copy of ``base`` with the cell's ``SEED`` and ``DATASET.NUM_SHOTS``."""
    cfg = base.clone()
    cfg.defrost()
    cfg.SEED = int(seed)
    cfg.DATASET.NUM_SHOTS = int(shots)
    cfg.freeze()
    return cfg


def cfg_dict(cfg: Any) -> dict[str, Any]:
    """The config as nested plain dicts (what a record stores)."""
    from sarfewshot.engine.config import cfg_to_dict

    return cfg_to_dict(cfg)


def probe_cfg(req: GridRequest) -> Any:
    """Defaults + ``--config`` + trailing options: what the request says before any protocol
    preset (its ``DATASET.ROOT``, ``INPUT.SIZE`` and dataset options)."""
    from sarfewshot.engine import config as C

    cfg = C.get_cfg_default()
    C.extend_cfg(cfg)
    if req.config_file:
        C.merge_file(cfg, req.config_file)
    C.merge_opts(cfg, req.opts)
    return cfg


# ----------------------------------------------------------------------------- shared tensors


class SharedData:
    """In-process and on-disk caches of decoded images and frozen features.

    Images: one tensor per (dataset, preprocessing), rows = listing train pool then test set.
    Features: one float32 array per (backbone, listing, preprocessing, precision), same
    rows, saved as ``.npy`` (``allow_pickle=False``, written atomically) with a JSON manifest.
    """

    def __init__(
        self,
        output: Path,
        device: str,
        progress: bool,
        use_disk: bool = True,
        refresh: bool = False,
    ) -> None:
        self.cache_dir = Path(output) / "cache"
        self.device = device
        self.progress = progress
        self.use_disk = use_disk
        self.refresh = refresh  # --force: rebuild (and rewrite) every disk cache this run uses
        self._images: dict[tuple[str, str], Any] = {}
        self._features: dict[str, np.ndarray] = {}

    def images(self, dataset: ResolvedDataset, spec: Any) -> Any:
        """The dataset's preprocessed images for ``spec`` (decoded once, then cached)."""
        from sarfewshot.data.cache import load_image_tensor

        key = (dataset.name, spec.key())
        if key not in self._images:
            # Only one dataset's images are held at a time: cells run dataset by dataset.
            self._images = {k: v for k, v in self._images.items() if k[0] == dataset.name}
            name = f"{dataset.name}-{dataset.version[:12]}-{spec.key()}.npy"
            cache_file = self.cache_dir / "images" / name if self.use_disk else None
            self._images[key] = load_image_tensor(
                dataset.paths,
                spec,
                cache_file=cache_file,
                progress=self.progress,
                version=dataset.version,
                refresh=self.refresh,
            )
        return self._images[key]

    def features(
        self,
        backbone: ResolvedBackbone,
        dataset: ResolvedDataset,
        spec: Any,
        batch_size: int,
        precision: str = "fp32",
    ) -> np.ndarray:
        """Frozen features of every listed image (computed once per identity, then cached)."""
        ident = {**feature_identity(backbone, dataset, spec), "precision": precision}
        key = sha256_text(repr(sorted(ident.items())))[:20]
        if key in self._features:
            return self._features[key]
        path = self.cache_dir / "features" / f"{_safe(backbone.label)}-{dataset.name}-{key}.npy"
        reuse = self.use_disk and not self.refresh
        feats = load_array(path, {"identity": ident}) if reuse else None
        if feats is None:
            feats = self._extract(backbone, dataset, spec, batch_size, precision)
            if self.use_disk:
                save_array(path, feats, {"identity": ident})
        self._features[key] = feats
        return feats

    def _extract(
        self,
        backbone: ResolvedBackbone,
        dataset: ResolvedDataset,
        spec: Any,
        batch_size: int,
        precision: str,
    ) -> np.ndarray:
        from sarfewshot.models.features import extract_features

        images = self.images(dataset, spec)
        model = backbone.factory()
        feats = extract_features(
            model,
            images,
            batch_size=batch_size,
            device=self.device,
            progress=self.progress,
            precision=precision,
        )
        del model
        feats = feats.numpy() if hasattr(feats, "numpy") else np.asarray(feats)
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        if not np.isfinite(feats).all():
            raise FloatingPointError(f"backbone {backbone.label} produced non-finite features")
        return feats


def feature_identity(backbone: ResolvedBackbone, dataset: ResolvedDataset, spec: Any) -> dict:
    """What frozen features depend on: the weights, the listing, the preprocessing."""
    info = backbone.info
    return {
        "version": FEATURE_CACHE_VERSION,
        "backbone": backbone.label,
        "registry_name": backbone.request.name,
        "arch": str(info.get("arch")),
        "weights_sha256": info.get("weights_sha256"),
        "init_seed": info.get("init_seed"),
        "dataset": dataset.name,
        "dataset_version": dataset.version,
        "preprocess": spec.key(),
        "img_size": int(spec.size),
    }


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text)


# ----------------------------------------------------------------------------- splits and cells


def split_dir(cfg: Any, output: Path) -> Path:
    """Where split files live: ``DATASET.SPLIT_DIR`` or ``<output>/splits``."""
    return Path(cfg.DATASET.SPLIT_DIR) if cfg.DATASET.SPLIT_DIR else Path(output) / "splits"


def val_fraction(cfg: Any, dataset: ResolvedDataset) -> float:
    """``DATASET.VAL_POOL`` when set (>= 0), else the dataset's own validation share."""
    value = float(cfg.DATASET.VAL_POOL)
    return value if value >= 0 else float(getattr(dataset.obj, "val_fraction", 0.0) or 0.0)


def load_split(
    cfg: Any,
    dataset: ResolvedDataset,
    output: Path,
    shots: int,
    seed: int,
    redraw_stale: bool = False,
    printer: Printer | None = None,
) -> Any:
    """The cell's split file (drawn and saved on first use, reused afterwards).

    With ``redraw_stale`` (``--force``) a split file drawn from an older listing of the folder
    is drawn again and replaced, with a note through ``printer``; otherwise it is an error.
    """
    from sarfewshot.data.splits import load_or_make_split, split_path

    directory = split_dir(cfg, output)
    repeat = bool(cfg.DATASET.REPEAT)
    path = split_path(directory, dataset.split_name, shots, seed, repeat)
    if redraw_stale and path.is_file() and _split_listing(path) != dataset.listing_sha256:
        if printer is not None:
            printer(f"--force: {path} was drawn from an older listing of the folder; redrawn")
        path.unlink()
    return load_or_make_split(
        directory,
        dataset.listing,
        dataset.split_name,
        seed,
        shots,
        val_fraction(cfg, dataset),
        repeat=repeat,
        allow_short=bool(cfg.DATASET.ALLOW_SHORT_CLASSES),
    )


def _split_listing(path: Path) -> str | None:
    import json

    try:
        return json.loads(Path(path).read_text()).get("listing_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def split_file(cfg: Any, dataset: ResolvedDataset, output: Path, split: Any) -> str:
    """The absolute path of a split's file, as the data layer names it."""
    from sarfewshot.data.splits import split_path

    path = split_path(split_dir(cfg, output), split.dataset, split.shots, split.seed, split.repeat)
    return str(Path(path).resolve())


def _rows(index: dict[str, int], items: Sequence[Any], dataset: str, part: str) -> np.ndarray:
    try:
        return np.array([index[d.impath] for d in items], dtype=np.int64)
    except KeyError as exc:
        raise SarFewShotError(
            f"split {part} entry {exc.args[0]!r} is not in {dataset}'s listing; the split file no"
            " longer matches the dataset folder"
        ) from None


def _take(array: Any, rows: np.ndarray) -> Any:
    """Rows of a tensor/array; a contiguous ascending range comes back as a view."""
    if rows.size and rows[-1] - rows[0] + 1 == rows.size and (np.diff(rows) == 1).all():
        return array[int(rows[0]) : int(rows[-1]) + 1]
    if hasattr(array, "index_select"):
        import torch

        return array.index_select(0, torch.from_numpy(rows))
    return array[rows]


def cell_data(
    split: Any,
    dataset: ResolvedDataset,
    needs: frozenset[str],
    images: Any = None,
    features: np.ndarray | None = None,
) -> CellData:
    """Index the shared images/features with the split's train, val and test entries."""
    val_items = list(getattr(split, "val", None) or [])
    rows = {
        "train": _rows(dataset.train_rows, split.train, dataset.name, "train"),
        "val": _rows(dataset.train_rows, val_items, dataset.name, "val"),
        "test": _rows(dataset.test_rows, split.test, dataset.name, "test"),
    }
    labels = {
        "train": np.array([d.label for d in split.train], dtype=np.int64),
        "val": np.array([d.label for d in val_items], dtype=np.int64),
        "test": np.array([d.label for d in split.test], dtype=np.int64),
    }
    data = CellData(
        classnames=list(dataset.listing.classnames),
        shots=int(split.shots),
        seed=int(split.seed),
        train_labels=labels["train"],
        test_labels=labels["test"],
        val_labels=labels["val"],
        train_paths=[d.impath for d in split.train],
        test_paths=[d.impath for d in split.test],
        dataset=dataset.name,
    )
    for part, idx in rows.items():
        if REQUIRES_IMAGES in needs and images is not None:
            setattr(data, f"{part}_images", _take(images, idx))
        if REQUIRES_FEATURES in needs and features is not None:
            setattr(data, f"{part}_features", _take(features, idx))
    return data


# ----------------------------------------------------------------------------- the runner

FINGERPRINT_EXCLUDE_EXTRA = ("TRAINER.LINEAR.FEATURE_CACHE",)  # same numbers either way


def config_sha(cfg: Any) -> str:
    """The config fingerprint stored in records (seed, K, paths and cache switches left out)."""
    from sarfewshot.results.records import CELL_CONFIG_FIELDS, config_fingerprint

    return config_fingerprint(cfg_dict(cfg), exclude=CELL_CONFIG_FIELDS + FINGERPRINT_EXCLUDE_EXTRA)


def _validate(req: GridRequest) -> None:
    for flag, values in (
        ("--backbone", req.backbones),
        ("--dataset", req.datasets),
        ("--shots", req.shots),
        ("--protocol", req.protocols),
    ):
        if not values:
            raise ConfigError(f"{flag}: give at least one value")
    bad = [k for k in req.shots if int(k) < 1]
    if bad:
        raise ConfigError(f"--shots {bad[0]}: K must be a positive integer")
    if req.seeds is not None and not req.seeds:
        raise ConfigError("--seeds: give at least one seed")
    if req.img_size is not None and int(req.img_size) < 1:
        raise ConfigError(f"--img-size {req.img_size}: must be a positive integer")
    output = Path(req.output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output}: is a file, not a folder")


def _unique(items: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


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

    # -- resolution ------------------------------------------------------------------------

    def prepare(self) -> list[Cell]:
        """Resolve names, folders and weights, build configs and enumerate this shard's cells.

        Unknown names, a missing root, an output folder inside the root, a wrong layout, an
        unreadable listing and missing weights raise here; :meth:`run` then draws every pending
        split (K larger than a class's pool raises there) before the first cell runs.
        """
        req = self.req
        _validate(req)
        self.device = resolve_device(req.device)
        self._resolve_protocols()
        probe = probe_cfg(req)
        root = str(req.root or probe.DATASET.ROOT) or None
        for name in _unique(req.datasets):
            options = {**_dataset_options(name, probe), **req.dataset_options}
            check_output_outside(self.output, root)
            memo_dir = self.output / "cache" / "fingerprints"
            ds = resolve_dataset(name, root, options, memo_dir, self.progress)
            self.datasets.setdefault(ds.name, ds)
        size = probe.INPUT.SIZE
        img_size = int(req.img_size or (size[0] if isinstance(size, (list, tuple)) else size))
        self.backbones = [resolve_backbone(_canonical_backbone(b), img_size) for b in req.backbones]
        from sarfewshot.models.registry import describe_arch

        for bb in self.backbones:  # which network each row is, before any cell runs
            self.print(f"backbone {describe_arch(bb.info)}")
        self._check_backbone_labels()
        self._build_cfgs()
        from sarfewshot.results.records import key_tuple

        shard = req.shard if req.shard is not None else shard_from_env()
        every = self._enumerate()
        self.command_keys = {key_tuple(c.key) for c in every}
        self.cells = select_shard(every, shard)
        return self.cells

    def _resolve_protocols(self) -> None:
        from sarfewshot.engine.registry import TRAINER_REGISTRY

        for name in _unique(self.req.protocols):
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
                    self.base_cfgs[(b, ds.name, pname)] = (cfg, config_sha(cfg))

    def _enumerate(self) -> list[Cell]:
        """Every cell in canonical order: backbone, dataset, protocol, K, seed."""
        cells = []
        for b, bb in enumerate(self.backbones):
            for ds in self.datasets.values():
                for pname, cls in self.protocols.items():
                    seeds = self.req.seeds if self.req.seeds is not None else cls.default_seeds
                    for k in _unique([int(v) for v in self.req.shots]):
                        for s in _unique([int(v) for v in seeds]):
                            cells.append(self._cell(b, bb, ds, pname, k, s))
        return cells

    def _cell(
        self, b: int, bb: ResolvedBackbone, ds: ResolvedDataset, pname: str, k: int, s: int
    ) -> Cell:
        base, fingerprint = self.base_cfgs[(b, ds.name, pname)]
        key = {
            "backbone": bb.label,
            "weights_sha256": bb.info.get("weights_sha256"),
            "dataset": ds.name,
            "protocol": pname,
            "shots": k,
            "seed": s,
        }
        return Cell(b, ds.name, pname, k, s, key, cell_cfg(base, k, s), fingerprint)

    # -- status ----------------------------------------------------------------------------

    def status(self, cell: Cell) -> str:
        """``done`` (ok or diverged record, same config and dataset version), ``conflict``
        (other config), ``stale`` (another version of the dataset folder), ``failed`` (a failed
        record, retried) or ``todo``."""
        from sarfewshot.results.records import (
            RecordError,
            dataset_version,
            key_tuple,
            read_record,
            record_path,
        )

        path = record_path(self.output, cell.key)
        if not path.is_file():
            return "todo"
        try:
            record = read_record(path)
        except RecordError:
            return "todo"  # a damaged record is recomputed
        if key_tuple(record["key"]) != key_tuple(cell.key):
            return "todo"
        if record["status"] == "failed":
            return "failed"
        if record["config_sha256"] != cell.fingerprint:
            return "conflict"
        if dataset_version(record) != self.datasets[cell.dataset].version:
            return "stale"
        return "done"

    def plan(self) -> tuple[list[Cell], int]:
        """The cells to run (in execution order) and the number already done."""
        statuses = [(c, "todo" if self.req.force else self.status(c)) for c in self.cells]
        conflicts = [c for c, st in statuses if st == "conflict"]
        if conflicts:
            from sarfewshot.results.records import cell_id

            raise ConfigError(
                f"{len(conflicts)} cell(s) in {self.output} were computed with a different "
                f"config (e.g. {cell_id(conflicts[0].key)}); pass --force to recompute them or "
                "choose another --output"
            )
        self._check_stale([c for c, st in statuses if st == "stale"])
        todo = [c for c, st in statuses if st != "done"]
        order = {name: i for i, name in enumerate(self.datasets)}
        porder = {name: i for i, name in enumerate(self.protocols)}
        # Dataset-major execution keeps one dataset's images in memory at a time.
        todo.sort(key=lambda c: (order[c.dataset], c.backbone, porder[c.protocol], c.shots, c.seed))
        return todo, len(statuses) - len(todo)

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

    def run(self) -> GridSummary:
        """Run the pending cells, then aggregate every record of the run folder."""
        if not self.cells:
            self.prepare()
        todo, done = self.plan()
        for cell in todo:
            # Every split is drawn (or checked) before any cell runs, so a K larger than a
            # class's pool or a split that no longer matches its folder stops the grid up front.
            self._split(cell, redraw=self.req.force)
        summary = GridSummary(total=len(self.cells), done_before=done)
        self.print(f"{done} cells already done, {len(todo)} to run")
        shared = SharedData(
            self.output,
            self.device,
            self.progress,
            use_disk=self.req.feature_cache,
            refresh=self.req.force,
        )
        bars = _Bars(len(todo), self.progress)
        say = self._printer(bars)
        try:
            for n, cell in enumerate(todo, 1):
                bars.start_cell(_cell_label(cell, self.backbones))
                self._run_one(cell, shared, bars, summary, say, f"[{n}/{len(todo)}]")
                bars.end_cell()
        finally:
            bars.close()
        self._leaderboard(summary)
        return summary

    def _printer(self, bars: _Bars) -> Printer:
        if not bars.enabled:
            return self.print
        return lambda text: bars.cells.write(text)

    def _run_one(
        self,
        cell: Cell,
        shared: SharedData,
        bars: _Bars,
        summary: GridSummary,
        say: Printer,
        tag: str,
    ) -> None:
        label = _cell_label(cell, self.backbones)
        if not self.req.force and self.status(cell) == "done":
            say(f"{tag} {label}: done meanwhile by another process, skipped")
            return
        start = time.perf_counter()
        try:
            record = self._execute(cell, shared, bars)
        except (SarFewShotError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - one failing cell must not stop the grid
            message = f"{type(exc).__name__}: {exc}"
            status = "diverged" if isinstance(exc, NonFiniteLossError) else "failed"
            record = self._failed_record(cell, message, time.perf_counter() - start, status)
            _debug_traceback()
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

    def _execute(self, cell: Cell, shared: SharedData, bars: _Bars) -> dict[str, Any]:
        from sarfewshot.data.transforms import spec_from_cfg

        start = time.perf_counter()
        cfg, protocol = cell.cfg, self.protocols[cell.protocol]
        ds, bb = self.datasets[cell.dataset], self.backbones[cell.backbone]
        split = self._split(cell)
        needs = protocol.requirements(cfg)
        spec = spec_from_cfg(cfg)
        images = shared.images(ds, spec) if REQUIRES_IMAGES in needs else None
        feats = None
        if REQUIRES_FEATURES in needs:
            batch, precision = int(cfg.DATALOADER.TEST.BATCH_SIZE), str(cfg.MODEL.PRECISION)
            feats = shared.features(bb, ds, spec, batch, precision)
        data = cell_data(split, ds, needs, images, feats)
        data_s = time.perf_counter() - start
        ctx = CellContext(self.device, bb.factory, bars.on_epoch, self.progress)
        outcome = self._run_protocol(cell, protocol, data, ctx)
        timings = {"data_s": data_s, **outcome.timings}
        timings["total_s"] = time.perf_counter() - start
        reason = divergence(outcome.metrics, len(ds.listing.classnames))
        status = "diverged" if reason else "ok"
        return self._record(cell, split, outcome.metrics, timings, reason, status)

    def _run_protocol(self, cell: Cell, protocol: type, data: CellData, ctx: CellContext) -> Any:
        """``protocol.run_cell``, with a TensorBoard epoch logger under ``--tensorboard``."""
        if not self.req.tensorboard:
            return protocol.run_cell(cell.cfg, data, ctx)
        from sarfewshot.results.records import cell_id
        from sarfewshot.utils.tensorboard import EpochLogger

        logger = EpochLogger(self.output / "tensorboard" / cell_id(cell.key))
        ctx.on_summary = logger
        try:
            return protocol.run_cell(cell.cfg, data, ctx)
        finally:
            logger.close()

    def _record(
        self,
        cell: Cell,
        split: Any,
        metrics: dict,
        timings: dict,
        error: str | None = None,
        status: str = "ok",
    ) -> dict[str, Any]:
        from sarfewshot.results.records import make_record

        ds, bb = self.datasets[cell.dataset], self.backbones[cell.backbone]
        split_info = {"path": None, "sha256": None}
        if split is not None:
            split_info = {
                "path": split_file(cell.cfg, ds, self.output, split),
                "sha256": split.sha256(),
                "support_counts": split.support_counts(),  # the real K per class
            }
        return make_record(
            backbone={**_backbone_section(bb), "precision": str(cell.cfg.MODEL.PRECISION)},
            dataset=_dataset_section(ds),
            split=split_info,
            protocol=cell.protocol,
            shots=cell.shots,
            seed=cell.seed,
            config=cfg_dict(cell.cfg),
            config_sha256=cell.fingerprint,
            metrics=metrics,
            timings=timings,
            device=_device_name(self.device),
            status=status,
            error=error,
        )

    def _split(self, cell: Cell, redraw: bool = False) -> Any:
        """The cell's split; ``redraw`` replaces a split file drawn from an older listing."""
        ds = self.datasets[cell.dataset]
        return load_split(cell.cfg, ds, self.output, cell.shots, cell.seed, redraw, self.print)

    def _failed_record(
        self, cell: Cell, message: str, seconds: float, status: str = "failed"
    ) -> dict[str, Any]:
        try:
            split = self._split(cell)
        except Exception:  # noqa: BLE001 - the failure itself may have been the split
            split = None
        return self._record(cell, split, {}, {"total_s": seconds}, message, status)

    def _leaderboard(self, summary: GridSummary) -> None:
        from sarfewshot.results.aggregate import aggregate_records
        from sarfewshot.results.export import table_text, write_csv
        from sarfewshot.results.records import iter_records, key_tuple

        records = list(iter_records([self.output]))
        if not records:
            return
        # The CSV is the folder's leaderboard; the table shows only this command's cells (all
        # shards), so rows of other commands or of nested run folders do not leak into it.
        summary.leaderboard_csv = write_csv(
            aggregate_records(records), self.output / "leaderboard.csv"
        )
        mine = [r for r in records if key_tuple(r["key"]) in self.command_keys]
        rows = aggregate_records(mine)
        if rows:
            summary.table = table_text(rows)
            self.print(summary.table)
        others = len(records) - len(mine)
        extra = f" (also holds {others} record(s) of other commands)" if others else ""
        self.print(f"leaderboard: {summary.leaderboard_csv}{extra}")
        problems = self._unfinished_cells()
        if problems:
            self.print(
                f"{len(problems)} cell(s) of this command have no result (recorded; failed "
                "cells are retried by the next run, diverged ones are not):"
            )
            for line in problems:
                self.print(f"  {line}")

    def _unfinished_cells(self) -> list[str]:
        """``label: status: reason`` of this command's cells whose record is failed or diverged."""
        from sarfewshot.results.records import RecordError, read_record, record_path

        lines = []
        for cell in self.cells:
            path = record_path(self.output, cell.key)
            try:
                record = read_record(path) if path.is_file() else None
            except RecordError:
                continue
            if record is not None and record["status"] != "ok":
                label = _cell_label(cell, self.backbones)
                lines.append(f"{label}: {record['status']}: {record['error']}")
        return lines


def run_grid(req: GridRequest, printer: Printer = print) -> GridSummary:
    """Resolve ``req``, run the cells that are not done yet, print and write the leaderboard."""
    runner = GridRunner(req, printer)
    runner.prepare()
    return runner.run()


# ----------------------------------------------------------------------------- small helpers


def _dataset_options(name: str, cfg: Any) -> dict[str, Any]:
    from sarfewshot.data.build import dataset_options
    from sarfewshot.data.registry import get_dataset

    try:
        get_dataset(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"--dataset: {exc}") from None
    return dataset_options(name, cfg)


def _canonical_backbone(req: BackboneRequest) -> BackboneRequest:
    from sarfewshot.models.registry import get_backbone_spec

    try:
        spec = get_backbone_spec(req.name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"--backbone: {exc} (or timm:<model name>)") from None
    return BackboneRequest(spec.name, req.weights or None, req.arch or None)


def _cell_label(cell: Cell, backbones: Sequence[ResolvedBackbone]) -> str:
    return (
        f"{backbones[cell.backbone].label} {cell.dataset} {cell.protocol} "
        f"K={cell.shots} seed={cell.seed}"
    )


def _backbone_section(bb: ResolvedBackbone) -> dict[str, Any]:
    info = bb.info
    section = {
        "name": bb.label,
        "arch": info.get("arch"),
        "arch_source": info.get("arch_source"),
        "weights": info.get("weights"),
        "weights_sha256": info.get("weights_sha256"),
        "load_report": info.get("load"),
        "registry_name": bb.request.name,
        "num_features": bb.num_features,
    }
    if info.get("init_seed") is not None:
        section["init_seed"] = info["init_seed"]
    return section


def _dataset_section(ds: ResolvedDataset) -> dict[str, Any]:
    return {
        "name": ds.name,
        "root": str(ds.listing.root),
        "listing_sha256": ds.listing_sha256,
        "fingerprint": ds.fingerprint.to_dict() if ds.fingerprint is not None else None,
        "num_classes": len(ds.listing.classnames),
        "classnames": list(ds.listing.classnames),
        "num_test": len(ds.listing.test),
    }


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def _debug_traceback() -> None:
    # Full tracebacks of failed cells only on request: the record keeps the one-line message.
    if os.environ.get("SARFEWSHOT_DEBUG", "") not in ("", "0"):
        traceback.print_exc()
