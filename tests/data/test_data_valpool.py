"""DATASET.VAL_POOL_RULE: random (the default, unchanged) and blocks (seed-free contiguous blocks
of azimuth or file order), on synthetic listings and on the real MSTAR chips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sarfewshot.data.base import Datum, Listing
from sarfewshot.data.splits import load_or_make_split, make_split, validation_pool
from sarfewshot.data.valpool import BLOCKS_PER_CLASS, chip_azimuth, class_order
from sarfewshot.errors import SplitError


def _listing(sizes=(60, 45, 12), root="/data/fake") -> Listing:
    names = [f"c{i}" for i in range(len(sizes))]
    train = [
        Datum(f"train/{c}/{j:03d}.png", i, classname=c)
        for i, (c, n) in enumerate(zip(names, sizes))
        for j in range(n)
    ]
    test = [Datum(f"test/{c}/0.png", i, classname=c) for i, c in enumerate(names)]
    return Listing(root=Path(root), classnames=names, train=train, test=test)


def _runs(positions: list[int], n: int) -> int:
    """How many contiguous runs the held positions form on a circle of n."""
    held = set(positions)
    return sum(1 for p in held if (p - 1) % n not in held)


def test_blocks_pool_does_not_depend_on_the_seed_and_is_contiguous():
    listing = _listing()
    pools = {seed: validation_pool(listing, "fake", 0.2, "blocks", seed) for seed in (0, 1, 7)}
    assert pools[0] == pools[1] == pools[7]
    for label, n in enumerate((60, 45, 12)):
        held = [int(Path(d.impath).stem) for d in pools[0] if d.label == label]
        assert len(held) == int(0.2 * n + 0.5)  # the same count as the random rule
        assert _runs(held, n) <= BLOCKS_PER_CLASS
    # the K-shot draw still follows the seed, from the same pool and never from the val pool
    a = make_split(listing, "fake", 1, 5, 0.2, val_rule="blocks")
    b = make_split(listing, "fake", 2, 5, 0.2, val_rule="blocks")
    assert a.val == b.val == pools[0] and a.train != b.train
    assert not {d.impath for d in a.train} & {d.impath for d in a.val}


def test_random_rule_is_todays_draw_and_its_file_is_unchanged(tmp_path):
    listing = _listing()
    default = make_split(listing, "fake", 3, 5, 0.2)
    assert make_split(listing, "fake", 3, 5, 0.2, val_rule="random") == default
    assert "val_rule" not in default.to_dict()  # same file, same hash as before the rule
    assert validation_pool(listing, "fake", 0.2, "random", 3) == default.val
    assert validation_pool(listing, "fake", 0.2, "random", 4) != default.val
    blocks = load_or_make_split(tmp_path, listing, "fake", 3, 5, 0.2, val_rule="blocks")
    path = tmp_path / "fake" / "shot_5-seed_3.json"
    assert json.loads(path.read_text())["val_rule"] == "blocks"
    assert load_or_make_split(tmp_path, listing, "fake", 3, 5, 0.2, val_rule="blocks") == blocks
    with pytest.raises(SplitError, match="VAL_POOL_RULE blocks, not the requested random"):
        load_or_make_split(tmp_path, listing, "fake", 3, 5, 0.2)
    with pytest.raises(SplitError, match="VAL_POOL_RULE 'azimuth'"):
        make_split(listing, "fake", 3, 5, 0.2, val_rule="azimuth")


def test_blocks_follow_azimuth_when_file_names_carry_it(tmp_path):
    # SAMPLE-style names whose file order is not their azimuth order
    azimuths = [(7 * j) % 60 * 6.0 for j in range(60)]  # a permutation of 0, 6, ..., 354
    train = [
        Datum(f"png/c0/x{j:02d}_elevDeg_017_azCenter_{int(a):03d}_50_serial.png", 0, classname="c0")
        for j, a in enumerate(azimuths)
    ]
    listing = Listing(root=tmp_path, classnames=["c0"], train=train, test=[])
    order, source = class_order(listing, train)
    assert source == "azimuth" and [azimuths[i] for i in order] == sorted(azimuths)
    assert chip_azimuth(Path(train[1].impath)) == pytest.approx(azimuths[1] + 0.5)
    pool = validation_pool(listing, "sample", 0.2, "blocks")
    steps = [int(round((chip_azimuth(Path(d.impath)) - 0.5) / 6)) for d in pool]
    assert len(steps) == 12 and _runs(steps, 60) <= BLOCKS_PER_CLASS
    by_file = [int(Path(d.impath).name[1:3]) for d in pool]
    assert _runs(by_file, 60) > BLOCKS_PER_CLASS  # contiguous in azimuth, not in file order


@pytest.mark.realdata
def test_raw_mstar_headers_give_the_azimuth(mstar_raw_root):
    path = mstar_raw_root / "17_DEG" / "BMP2" / "HB03787.000"
    assert chip_azimuth(path) == pytest.approx(346.491974)
    assert chip_azimuth(mstar_raw_root / "17_DEG" / "T72" / "HB03787.015") == pytest.approx(
        10.790657
    )


@pytest.mark.realdata
def test_blocks_pool_on_the_real_mstar_chips(mstar_soc_root):
    from sarfewshot.data.build import build_listing

    _, listing = build_listing("mstar", mstar_soc_root)
    pool = validation_pool(listing, "mstar_soc", 0.2, "blocks", seed=1)
    assert pool == validation_pool(listing, "mstar_soc", 0.2, "blocks", seed=5)
    assert len(pool) == len(validation_pool(listing, "mstar_soc", 0.2, "random", 1)) == 551
    for label, cname in enumerate(listing.classnames):
        items = [d for d in listing.train if d.label == label]
        order, source = class_order(listing, items)
        assert source == "file order"  # the JPEG bundle's hbNNNNN names carry no azimuth
        rank = {items[i].impath: r for r, i in enumerate(order)}
        held = [rank[d.impath] for d in pool if d.label == label]
        assert len(held) == int(0.2 * len(items) + 0.5), cname
        assert _runs(held, len(items)) <= BLOCKS_PER_CLASS, cname


def test_the_default_rule_leaves_the_config_fingerprint_as_it_was():
    from sarfewshot.engine import config as C
    from sarfewshot.engine.grid.config import FINGERPRINT_EXCLUDE_EXTRA, cfg_dict, config_sha
    from sarfewshot.utils.confighash import CELL_CONFIG_FIELDS, config_fingerprint

    cfg = C.get_cfg_default()
    C.extend_cfg(cfg)
    tree = cfg_dict(cfg)
    del tree["DATASET"]["VAL_POOL_RULE"]  # a config from before the key existed
    before = config_fingerprint(tree, exclude=CELL_CONFIG_FIELDS + FINGERPRINT_EXCLUDE_EXTRA)
    assert config_sha(cfg) == before
    cfg.DATASET.VAL_POOL_RULE = "blocks"
    assert config_sha(cfg) != before


def test_the_neighbour_script_finds_a_planted_duplicate():
    import importlib.util
    import sys

    import numpy as np

    script = Path(__file__).resolve().parents[2] / "scripts" / "val_pool_neighbours.py"
    spec = importlib.util.spec_from_file_location("val_pool_neighbours", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 64))
    x[3] = x[0]  # a pool chip's exact copy among the support candidates
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    best = module.nearest_support({0: (["a", "b", "c", "d"], x)}, pool={"a", "b"})
    assert best[0] == pytest.approx(1.0) and abs(best[1]) < 0.9
