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

Outside the package, callers need only the request, :func:`run_grid` and its summary (and
:func:`parse_shard` for ``--shard i/n``); those are re-exported here. Everything else is
imported from its module (``from sarfewshot.engine.grid.data import cell_data``).
"""

from sarfewshot.engine.grid.plan import BackboneRequest, GridRequest, GridSummary, parse_shard
from sarfewshot.engine.grid.runner import run_grid

__all__ = ["BackboneRequest", "GridRequest", "GridSummary", "parse_shard", "run_grid"]
