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

The package, in the order data flows through it:

- :mod:`.plan`: the request, the cells, shards and each cell's status;
- :mod:`.resolve`: backbones, datasets and protocols resolved once;
- :mod:`.config`: one config per (backbone, dataset, protocol), one frozen copy per cell;
- :mod:`.data`: the shared image and feature caches, splits, each cell's data;
- :mod:`.progress`: bars and heartbeat lines;
- :mod:`.executors` (and :mod:`.batched`): how pending cells become records;
- :mod:`.record`: records and the leaderboard;
- :mod:`.runner`: :class:`GridRunner` and :func:`run_grid`, which tie them together.
"""

from sarfewshot.engine.grid.config import (
    FINGERPRINT_EXCLUDE_EXTRA,
    build_protocol_cfg,
    cell_cfg,
    cfg_dict,
    config_sha,
    probe_cfg,
)
from sarfewshot.engine.grid.data import (
    FEATURE_CACHE_VERSION,
    SharedData,
    Workspace,
    cell_data,
    feature_identity,
    load_split,
    split_dir,
    split_file,
    val_fraction,
)
from sarfewshot.engine.grid.executors import Executor, SerialExecutor
from sarfewshot.engine.grid.plan import (
    DEFAULT_PROTOCOLS,
    BackboneRequest,
    Cell,
    GridRequest,
    GridSummary,
    Printer,
    cell_status,
    parse_shard,
    select_shard,
    shard_from_env,
)
from sarfewshot.engine.grid.progress import Bars, progress_enabled
from sarfewshot.engine.grid.resolve import (
    RANDOM_INIT_SEED,
    ResolvedBackbone,
    ResolvedDataset,
    backbone_label,
    check_output_outside,
    resolve_backbone,
    resolve_dataset,
    resolve_protocol,
)
from sarfewshot.engine.grid.runner import GridRunner, run_grid

__all__ = [
    "DEFAULT_PROTOCOLS",
    "FEATURE_CACHE_VERSION",
    "FINGERPRINT_EXCLUDE_EXTRA",
    "RANDOM_INIT_SEED",
    "BackboneRequest",
    "Bars",
    "Cell",
    "Executor",
    "GridRequest",
    "GridRunner",
    "GridSummary",
    "Printer",
    "ResolvedBackbone",
    "ResolvedDataset",
    "SerialExecutor",
    "SharedData",
    "Workspace",
    "backbone_label",
    "build_protocol_cfg",
    "cell_cfg",
    "cell_data",
    "cell_status",
    "cfg_dict",
    "check_output_outside",
    "config_sha",
    "feature_identity",
    "load_split",
    "parse_shard",
    "probe_cfg",
    "progress_enabled",
    "resolve_backbone",
    "resolve_dataset",
    "resolve_protocol",
    "run_grid",
    "select_shard",
    "shard_from_env",
    "split_dir",
    "split_file",
    "val_fraction",
]
