"""Resolution: backbones built once, datasets listed and fingerprinted once, protocol names.

User errors (an unknown name, a missing root, an output folder inside the root, missing
weights) raise here, before any cell runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sarfewshot.engine.grid.plan import BackboneRequest
from sarfewshot.errors import ConfigError, UnknownNameError
from sarfewshot.utils.io import sha256_text

RANDOM_INIT_SEED = 0  # weight-less backbones are one fixed random init, so their cells compare


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
    conditions: list[Any] = field(default_factory=list)  # TestConditions a run scores
    extra_sets: dict[str, ResolvedDataset] = field(default_factory=dict)  # "extra" conditions

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


def resolve_backbone(
    req: BackboneRequest, img_size: int, input_calibration: str = "none"
) -> ResolvedBackbone:
    """Build the backbone once on CPU (weights loaded and hashed) and describe it."""
    from sarfewshot.models.factory import build_backbone

    model = build_backbone(
        req.name,
        weights=req.weights,
        arch=req.arch,
        img_size=img_size,
        seed=RANDOM_INIT_SEED,
        input_calibration=input_calibration,
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


def resolve_conditions(
    ds: ResolvedDataset,
    wanted: list[str],
    memo_dir: Path | None = None,
    progress: bool = False,
) -> None:
    """Set ``ds.conditions`` to the named test sets ``wanted`` (``all``: every one the setting
    names, in its order) and list, fingerprint and index the images of ``extra`` ones.

    Raises:
        ConfigError: a name the setting does not have (the message lists those it has).
    """
    from sarfewshot.data.base import Listing
    from sarfewshot.data.fingerprint import dataset_fingerprint

    offered = ds.obj.test_conditions(ds.listing)
    names = [c.name for c in offered]
    asked = [w.strip() for w in wanted if w.strip()]
    if "all" not in asked:
        unknown = [w for w in asked if w not in names]
        if unknown:
            raise ConfigError(
                f"--conditions {','.join(unknown)}: dataset {ds.name} ({ds.split_name}) names "
                f"the test conditions {', '.join(names)} (or all)"
            )
    ds.conditions = [c for c in offered if "all" in asked or c.name in asked]
    for cond in ds.conditions:
        if cond.part != "extra":
            continue
        listing = Listing(ds.listing.root, list(ds.listing.classnames), [], list(cond.items))
        memo = None
        if memo_dir is not None:
            where = sha256_text(str(listing.root))[:12]
            memo = Path(memo_dir) / f"{ds.name}-{cond.name}-{where}.json"
        ds.extra_sets[cond.name] = ResolvedDataset(
            name=f"{ds.name}#{cond.name}",
            obj=ds.obj,
            listing=listing,
            listing_sha256=listing.sha256(),
            train_rows={},
            test_rows={d.impath: i for i, d in enumerate(listing.test)},
            split_name=ds.split_name,
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


def dataset_options_for(name: str, cfg: Any) -> dict[str, Any]:
    from sarfewshot.data.build import dataset_options
    from sarfewshot.data.registry import get_dataset

    try:
        get_dataset(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"--dataset: {exc}") from None
    return dataset_options(name, cfg)


def canonical_backbone(req: BackboneRequest) -> BackboneRequest:
    from sarfewshot.models.registry import get_backbone_spec

    try:
        spec = get_backbone_spec(req.name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"--backbone: {exc} (or timm:<model name>)") from None
    return BackboneRequest(spec.name, req.weights or None, req.arch or None)
