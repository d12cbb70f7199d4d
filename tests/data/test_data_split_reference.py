"""The few-shot draw, pinned: a committed reference split and the seed's part in the K-shot draw.

``fixtures/split_reference.json`` holds the splits drawn from one tiny deterministic listing for
seeds 0-2, K = 1 and 5 and ``DATASET.VAL_POOL`` 0 and 0.2. Every published split comes from the
same rule, so a change to the draw (generator keys, order of draws, hold-out rounding) shows here
as a diff. If the change is intended, regenerate the file with
``python -m tests.data.test_data_split_reference`` and say so in docs/architecture.md.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest

from sarfewshot.data.base import Datum, Listing
from sarfewshot.data.splits import make_split

REFERENCE = Path(__file__).parent / "fixtures" / "split_reference.json"
DATASET = "reference"
SEEDS = (0, 1, 2)
SHOTS = (1, 5)
VAL_POOLS = (0.0, 0.2)


def reference_listing() -> Listing:
    """Three classes with 7, 9 and 6 train images and 2 test images each (no files needed)."""
    names = ["alpha", "bravo", "charlie"]
    sizes = (7, 9, 6)
    train = [
        Datum(f"train/{c}/{j:02d}.png", i, classname=c)
        for i, (c, n) in enumerate(zip(names, sizes))
        for j in range(n)
    ]
    test = [
        Datum(f"test/{c}/{j:02d}.png", i, classname=c) for i, c in enumerate(names) for j in (0, 1)
    ]
    return Listing(root=Path("/nonexistent/reference"), classnames=names, train=train, test=test)


def draw_all() -> dict:
    """Every reference case as ``{"seed=S,K=K,val=V": {"train": [...], "val": [...]}}``."""
    listing = reference_listing()
    cases = {}
    for seed in SEEDS:
        for shots in SHOTS:
            for val in VAL_POOLS:
                split = make_split(listing, DATASET, seed, shots, val)
                cases[f"seed={seed},K={shots},val={val:g}"] = {
                    "train": [d.impath for d in split.train],
                    "val": [d.impath for d in split.val],
                }
    return {"dataset": DATASET, "listing_sha256": listing.sha256(), "cases": cases}


def test_the_draw_matches_the_committed_reference():
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    drawn = draw_all()
    assert drawn["listing_sha256"] == reference["listing_sha256"]
    assert sorted(drawn["cases"]) == sorted(reference["cases"])
    for name, case in reference["cases"].items():
        assert drawn["cases"][name] == case, f"the draw changed for {name}"


@pytest.mark.parametrize("shots", SHOTS)
def test_without_a_validation_pool_every_seed_draws_other_support_sets(shots):
    # With VAL_POOL 0 (as sar_acd runs) the hold-out cannot make seeds differ: only the K-shot
    # generator's seed can. A draw from a fixed generator would give every seed the same sets.
    listing = reference_listing()
    support = {
        seed: [d.impath for d in make_split(listing, DATASET, seed, shots, 0.0).train]
        for seed in SEEDS
    }
    for a, b in combinations(SEEDS, 2):
        assert support[a] != support[b], f"seeds {a} and {b} drew the same {shots}-shot sets"
    # and one seed is reproducible
    again = make_split(listing, DATASET, 1, shots, 0.0).train
    assert [d.impath for d in again] == support[1]


def test_the_reference_covers_both_pool_settings():
    cases = json.loads(REFERENCE.read_text(encoding="utf-8"))["cases"]
    assert all(case["val"] == [] for name, case in cases.items() if name.endswith("val=0"))
    # round(0.2 * n) per class: 1 of 7, 2 of 9, 1 of 6
    assert all(len(case["val"]) == 4 for name, case in cases.items() if name.endswith("val=0.2"))


if __name__ == "__main__":  # regenerate the fixture after an intended change of the draw
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps(draw_all(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {REFERENCE}")
