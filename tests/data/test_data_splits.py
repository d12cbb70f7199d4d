"""Few-shot splits: nested across K, seeded, warned, portable JSON, shared between labs."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import sarfewshot.data.splits as splits_mod
from sarfewshot.data.base import Datum, Listing
from sarfewshot.data.splits import (
    export_splits,
    import_splits,
    load_or_make_split,
    load_split,
    make_split,
    read_coop_split,
    save_split,
    split_path,
)
from sarfewshot.errors import SplitError


def _listing(sizes=(30, 25, 12), n_test=4, root="/data/fake") -> Listing:
    names = [f"c{i}" for i in range(len(sizes))]
    train = [
        Datum(f"train/{c}/{j:03d}.png", i, classname=c)
        for i, (c, n) in enumerate(zip(names, sizes))
        for j in range(n)
    ]
    test = [
        Datum(f"test/{c}/{j:03d}.png", i, classname=c)
        for i, c in enumerate(names)
        for j in range(n_test)
    ]
    return Listing(root=Path(root), classnames=names, train=train, test=test)


def _per_class(items):
    return Counter(d.label for d in items)


@pytest.mark.parametrize("seed", [0, 3])
def test_nested_across_k_and_val_pool_fixed(seed):
    listing = _listing()
    draws = {k: make_split(listing, "fake", seed, k, 0.2) for k in (1, 5, 10)}
    sets = {k: {d.impath for d in s.train} for k, s in draws.items()}
    assert sets[1] < sets[5] < sets[10]
    for k, s in draws.items():
        assert _per_class(s.train) == {0: k, 1: k, 2: k}
        assert s.val == draws[1].val  # the validation pool does not depend on K
        assert not {d.impath for d in s.val} & sets[k]
        assert s.test == listing.test
    assert _per_class(draws[1].val) == {0: 6, 1: 5, 2: 2}  # round(0.2 * n) per class


def test_seeded_never_global_state():
    listing = _listing()
    random.seed(1)
    np.random.seed(1)
    a = make_split(listing, "fake", 0, 5, 0.2)
    random.seed(2)
    np.random.seed(2)
    random.random()
    b = make_split(listing, "fake", 0, 5, 0.2)
    assert a.train == b.train and a.sha256() == b.sha256()
    c = make_split(listing, "fake", 1, 5, 0.2)
    assert {d.impath for d in c.train} != {d.impath for d in a.train}  # seed 0 is a real seed
    d = make_split(listing, "other_dataset", 0, 5, 0.2)
    assert d.train != a.train  # the dataset name is part of the stream


def test_small_class_is_refused_unless_allowed():
    listing = _listing(sizes=(10, 10, 3))
    with pytest.raises(SplitError, match=r"fake: K=5 .*'c2' has 3 images.*ALLOW_SHORT_CLASSES"):
        make_split(listing, "fake", 0, 5, 0.0)
    with pytest.warns(UserWarning, match=r"'c2' has only 3 images.*K=5"):
        s = make_split(listing, "fake", 0, 5, 0.0, allow_short=True)
    assert _per_class(s.train) == {0: 5, 1: 5, 2: 3}
    assert s.support_counts() == {"c0": 5, "c1": 5, "c2": 3}
    assert s.short_classes() == {"c2": 3}
    assert make_split(listing, "fake", 0, 3, 0.0).short_classes() == {}
    # the validation hold-out counts: 4 of c2's 5 images remain for K=5
    with pytest.raises(SplitError, match="'c2' has 4"):
        make_split(_listing(sizes=(10, 10, 5)), "fake", 0, 5, 0.2)


def test_reused_short_split_file_is_refused_unless_allowed(tmp_path):
    listing = _listing(sizes=(10, 10, 3))
    with pytest.warns(UserWarning):
        drawn = load_or_make_split(tmp_path, listing, "fake", 0, 5, 0.0, allow_short=True)
    assert drawn.support_counts()["c2"] == 3
    with pytest.raises(SplitError, match=r"split file .*shot_5-seed_0.json.*'c2' has 3"):
        load_or_make_split(tmp_path, listing, "fake", 0, 5, 0.0)
    again = load_or_make_split(tmp_path, listing, "fake", 0, 5, 0.0, allow_short=True)
    assert again == drawn


def test_small_class_repeat_draws_with_replacement():
    listing = _listing(sizes=(10, 10, 3))
    with pytest.warns(UserWarning, match="using all of them"):
        s = make_split(listing, "fake", 0, 5, 0.0, allow_short=True)
    with pytest.warns(UserWarning, match="with replacement"):
        r5 = make_split(listing, "fake", 0, 5, 0.0, repeat=True)
        r8 = make_split(listing, "fake", 0, 8, 0.0, repeat=True)
    c2_5 = [d.impath for d in r5.train if d.label == 2]
    c2_8 = [d.impath for d in r8.train if d.label == 2]
    assert len(c2_5) == 5 and len(set(c2_5)) == 3  # every image once, then repeats
    assert c2_8[:5] == c2_5  # still nested
    assert [d for d in r5.train if d.label < 2] == [d for d in s.train if d.label < 2]
    with pytest.raises(SplitError, match="K=40 is larger than every class"):
        make_split(listing, "fake", 0, 40, 0.0)


def test_whole_pool_and_bad_arguments():
    listing = _listing()
    s = make_split(listing, "fake", 0, 0, 0.2)
    assert s.shots == -1 and len(s.train) + len(s.val) == len(listing.train)
    assert split_path("sp", "fake", -1, 2).name == "shot_all-seed_2.json"
    assert split_path("sp", "fake", 5, 0, repeat=True) == Path("sp/fake/shot_5-seed_0-repeat.json")
    with pytest.raises(SplitError, match="seed"):
        make_split(listing, "fake", -1, 5, 0.2)
    with pytest.raises(SplitError, match="VAL_POOL"):
        make_split(listing, "fake", 0, 5, 1.0)


def test_json_round_trip_relative_paths(tmp_path):
    listing = _listing(root=str(tmp_path / "dataroot"))
    s = make_split(listing, "fake", 7, 5, 0.2)
    path = tmp_path / "s.json"
    save_split(s, path)
    text = path.read_text()
    assert "dataroot" not in text  # portable: paths relative to the root
    data = json.loads(text)
    assert data["seed"] == 7 and data["shots"] == 5 and data["classnames"] == ["c0", "c1", "c2"]
    assert data["listing_sha256"] == listing.sha256()
    assert data["train"][0] == [s.train[0].impath, s.train[0].label, s.train[0].classname]
    back = load_split(path, listing)
    assert back == s and back.sha256() == s.sha256()
    # the same files under another root (another lab's machine) load fine
    assert load_split(path, _listing(root="/elsewhere")) == s


def test_changed_folder_and_malformed_files_are_errors(tmp_path):
    listing = _listing()
    path = tmp_path / "s.json"
    save_split(make_split(listing, "fake", 0, 5, 0.2), path)
    changed = _listing(sizes=(30, 25, 11))
    with pytest.raises(SplitError, match="changed since the split was drawn") as err:
        load_split(path, changed)
    assert listing.sha256() in str(err.value) and changed.sha256() in str(err.value)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SplitError, match="bad.json"):
        load_split(bad, listing)
    data = json.loads(path.read_text())
    data["train"][0] = ["x.png", 99, "c9"]
    bad.write_text(json.dumps(data))
    with pytest.raises(SplitError, match=r"bad.json.*train\[0\]"):
        load_split(bad, listing)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(SplitError, match="not a sarfewshot split file"):
        load_split(bad, listing)


def test_load_or_make_reuses_file(tmp_path, monkeypatch):
    listing = _listing()
    listing.extra["pool_split"] = {"rule": "test rule"}
    s = load_or_make_split(tmp_path, listing, "fake", 1, 5, 0.2)
    path = split_path(tmp_path, "fake", 5, 1)
    assert path.is_file() and (tmp_path / "fake" / "pool_split.json").is_file()
    pool = json.loads((tmp_path / "fake" / "pool_split.json").read_text())
    assert pool["rule"] == "test rule" and len(pool["test"]) == len(listing.test)

    def boom(*a, **k):
        raise AssertionError("should reuse the file")

    monkeypatch.setattr(splits_mod, "make_split", boom)
    assert load_or_make_split(tmp_path, listing, "fake", 1, 5, 0.2) == s
    with pytest.raises(SplitError, match="VAL_POOL"):
        load_or_make_split(tmp_path, listing, "fake", 1, 5, 0.1)


def test_export_import_between_labs(tmp_path):
    listing = _listing()
    lab_a, lab_b = tmp_path / "a", tmp_path / "b"
    for k in (1, 5):
        load_or_make_split(lab_a, listing, "fake", 0, k, 0.2)
    bundle = tmp_path / "bundle.json"
    assert export_splits(lab_a, bundle) == 2
    written = import_splits(bundle, lab_b)
    assert sorted(p.relative_to(lab_b).as_posix() for p in written) == [
        "fake/shot_1-seed_0.json",
        "fake/shot_5-seed_0.json",
    ]
    for p in written:
        assert p.read_text() == (lab_a / p.relative_to(lab_b)).read_text()
    assert load_or_make_split(lab_b, listing, "fake", 0, 5, 0.2) == load_split(
        lab_a / "fake" / "shot_5-seed_0.json", listing
    )

    data = json.loads(bundle.read_text())
    other = json.loads(json.dumps(data["splits"]["fake/shot_5-seed_0.json"]))
    other["seed"] = 9
    data["splits"]["fake/shot_5-seed_0.json"] = other
    bundle.write_text(json.dumps(data))
    with pytest.raises(SplitError, match="different split"):
        import_splits(bundle, lab_b)
    assert len(import_splits(bundle, lab_b, overwrite=True)) == 2
    data["splits"] = {"../evil.json": other}
    bundle.write_text(json.dumps(data))
    with pytest.raises(SplitError, match="evil.json"):
        import_splits(bundle, lab_b)
    with pytest.raises(SplitError, match="no sarfewshot split files"):
        export_splits(tmp_path / "empty", tmp_path / "x.json")


def test_read_coop_split(tmp_path):
    path = tmp_path / "split_coop.json"
    path.write_text(
        json.dumps(
            {
                "train": [["BMP2/a.jpeg", 1, "BMP2"]],
                "val": [["2S1/b.jpeg", 0, "2S1"]],
                "test": [["BMP2/c.jpeg", 1, "BMP2"], ["2S1/d.jpeg", 0, "2S1"]],
            }
        )
    )
    train, val, test = read_coop_split(path, "/data/MSTAR")
    assert train == [Datum("/data/MSTAR/BMP2/a.jpeg", 1, classname="BMP2")]
    assert len(val) == 1 and [d.label for d in test] == [1, 0]
    path.write_text(json.dumps({"train": [["a", "x", "y"]], "test": []}))
    with pytest.raises(SplitError, match="split_coop.json"):
        read_coop_split(path, "/data")


def test_a_stale_split_file_is_redrawn_only_when_asked(tmp_path):
    old = load_or_make_split(tmp_path, _listing(), "fake", 0, 5, 0.2)
    grown = _listing(sizes=(31, 25, 12))
    with pytest.raises(SplitError, match="no longer matches"):
        load_or_make_split(tmp_path, grown, "fake", 0, 5, 0.2)
    told = []
    new = load_or_make_split(tmp_path, grown, "fake", 0, 5, 0.2, on_stale=told.append)
    assert told == [split_path(tmp_path, "fake", 5, 0)]
    assert new.listing_sha256 == grown.sha256() != old.listing_sha256
    assert load_or_make_split(tmp_path, grown, "fake", 0, 5, 0.2) == new  # the file was replaced
