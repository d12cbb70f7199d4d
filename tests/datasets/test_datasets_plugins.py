"""Every dataset plug-in on its fake tree: counts, class names, relative paths, layout errors."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest

from sarfewshot.data.build import build_listing, split_name
from sarfewshot.data.registry import get_dataset, list_datasets
from sarfewshot.datasets.mstar_soc import MSTAR_CLASSES
from sarfewshot.errors import ConfigError, DatasetError, UnknownNameError
from tests import fakes


def _counts(items) -> dict:
    return dict(Counter(d.classname for d in items))


def _check_relative(listing) -> None:
    for d in listing.train + listing.test:
        assert not d.impath.startswith("/") and (listing.root / d.impath).is_file()
        assert listing.classnames[d.label] == d.classname


def test_registry_names_and_unknown_name():
    assert {
        "mstar_soc",
        "fusar_ship",
        "sar_acd",
        "sample",
        "folder",
        "mstar_raw",
        "synthetic",
    } <= set(list_datasets())
    assert get_dataset("MSTAR") is get_dataset("mstar_soc") is get_dataset("MSTAR_SOC")
    assert get_dataset("New_FUSAR") is get_dataset("fusar")
    with pytest.raises(UnknownNameError, match="mstar_soc"):
        get_dataset("mnist")


def test_mstar_soc_fake_tree(tmp_path):
    expected = fakes.make_mstar_soc_tree(tmp_path, n_train=3, n_test=2)
    ds, listing = build_listing("mstar", tmp_path)
    assert ds.name == "mstar_soc" and ds.val_fraction == 0.2
    assert listing.classnames == list(MSTAR_CLASSES)
    assert _counts(listing.train) == expected["train"]  # nested serial folders included
    assert _counts(listing.test) == expected["test"]  # BRDM2/ZSU234/lower-case spellings merged
    assert any(d.impath.count("/") == 3 for d in listing.train)  # TRAIN/BMP2/SN_x/file
    _check_relative(listing)
    _, direct = build_listing("MSTAR_SOC", tmp_path / "MSTAR_SOC")  # root may be MSTAR_SOC
    assert direct.sha256() == listing.sha256()


def test_mstar_soc_layout_errors(tmp_path):
    with pytest.raises(DatasetError, match="nowhere.*expected layout"):
        build_listing("mstar", tmp_path / "nowhere")
    (tmp_path / "MSTAR_SOC" / "TRAIN").mkdir(parents=True)
    with pytest.raises(DatasetError, match="TEST.*missing|expected"):
        build_listing("mstar", tmp_path)
    fakes.make_mstar_soc_tree(tmp_path / "t")
    (tmp_path / "t" / "MSTAR_SOC" / "TRAIN" / "BMP2_extra").mkdir()
    with pytest.raises(DatasetError, match="BMP2_extra.*holds no images"):
        build_listing("mstar", tmp_path / "t")
    shutil.rmtree(tmp_path / "t" / "MSTAR_SOC" / "TRAIN" / "BMP2_extra")
    fakes.write_image(
        tmp_path / "t" / "MSTAR_SOC" / "TEST" / "SLICY" / "a.png",
        fakes.chip(np.random.default_rng(0)),
    )
    with pytest.raises(DatasetError, match=r"TEST/SLICY is not one of the MSTAR SOC \(mstar_soc"):
        build_listing("mstar", tmp_path / "t")
    shutil.rmtree(tmp_path / "t" / "MSTAR_SOC" / "TEST" / "SLICY")
    shutil.rmtree(tmp_path / "t" / "MSTAR_SOC" / "TEST" / "D7")
    with pytest.raises(DatasetError, match="lacks the MSTAR SOC class folder.*D7"):
        build_listing("mstar", tmp_path / "t")


def test_fusar_fake_tree(tmp_path):
    expected = fakes.make_fusar_tree(tmp_path)
    ds, listing = build_listing("fusar", tmp_path)
    assert listing.classnames == sorted(fakes.FUSAR_CLASSES)
    assert _counts(listing.train) == expected["train"]
    assert _counts(listing.test) == expected["test"]
    assert all(d.impath.startswith("Val/") for d in listing.test)  # Val is the test set
    _check_relative(listing)
    with pytest.raises(DatasetError, match="New_FUSAR/Train"):
        build_listing("fusar", tmp_path / "New_FUSAR" / "Train")


def test_sar_acd_fixed_pool_split(tmp_path):
    fakes.make_sar_acd_tree(tmp_path / "lab1", n_per_class=20)
    fakes.make_sar_acd_tree(tmp_path / "lab2", n_per_class=20, seed=5)
    ds, one = build_listing("sar_acd", tmp_path / "lab1")
    _, two = build_listing("SAR_ACD", tmp_path / "lab2" / "SAR_ACD")
    assert ds.val_fraction == 0.0
    assert _counts(one.train) == {c: 2 for c in fakes.SAR_ACD_CLASSES}  # 10 % per class
    assert _counts(one.test) == {c: 18 for c in fakes.SAR_ACD_CLASSES}
    assert one.train == two.train and one.test == two.test  # fixed by the file list only
    assert "pool_split" in one.extra
    _check_relative(one)


def test_sample_modes(tmp_path):
    counts = fakes.make_sample_tree(tmp_path, per_elevation=2)
    _, measured = build_listing("sample", tmp_path)
    assert len(measured.train) == counts[("real", 17)]
    assert len(measured.test) == sum(counts[("real", e)] for e in (14, 15, 16))
    assert all("elevDeg_017" in d.impath for d in measured.train)
    assert measured.classnames == sorted(fakes.SAMPLE_CLASSES)
    ds, s2r = build_listing("sample", tmp_path / "png_images", mode="synth2real", format="qpm")
    assert all(d.impath.startswith("synth/") for d in s2r.train)
    assert all(d.impath.startswith("real/") for d in s2r.test)
    assert len(s2r.train) == sum(v for (k, _), v in counts.items() if k == "synth")
    assert split_name(ds) == "sample_synth2real_qpm"
    conds = ds.test_conditions(s2r)  # id: held-out synthetic chips; measured: the test set
    assert [(c.name, c.part) for c in conds] == [("id", "val"), ("measured", "test")]
    assert ds.plain_condition() == "measured"  # a plain run's test set is the measured one
    synth_ds, synth = build_listing("sample", tmp_path, mode="synthetic")
    assert all(d.impath.startswith("synth/") for d in synth.train + synth.test)
    assert [c.name for c in synth_ds.test_conditions(synth)] == ["id"]
    assert synth_ds.plain_condition() == "id"
    _check_relative(synth)
    with pytest.raises(ConfigError, match="SAMPLE_MODE"):
        build_listing("sample", tmp_path, mode="both")


def test_sample_without_elevations_uses_seeded_fraction(tmp_path):
    fakes.make_sample_tree(tmp_path, per_elevation=5, elevations=(15,))
    for p in (tmp_path / "png_images").rglob("*.png"):
        p.rename(p.with_name(p.name.replace("elevDeg", "el")))
    _, listing = build_listing("sample", tmp_path)
    assert _counts(listing.train) == {c: 4 for c in fakes.SAMPLE_CLASSES}  # 70 % of 5, rounded
    assert _counts(listing.test) == {c: 1 for c in fakes.SAMPLE_CLASSES}


def test_folder_layouts(tmp_path):
    expected = fakes.make_folder_tree(tmp_path / "split", split=True)
    _, listing = build_listing("folder", tmp_path / "split")
    assert _counts(listing.train) == expected["train"]
    assert _counts(listing.test) == expected["test"]
    _check_relative(listing)
    fakes.make_folder_tree(tmp_path / "flat", split=False, n_train=10)
    ds, flat = build_listing("folder", tmp_path / "flat")
    assert _counts(flat.train) == {"cat_a": 7, "cat_b": 7, "cat_c": 7}  # automatic 70/30
    assert _counts(flat.test) == {"cat_a": 3, "cat_b": 3, "cat_c": 3}
    assert split_name(ds) == "folder-flat" and "pool_split" in flat.extra
    _, again = build_listing("folder", tmp_path / "flat")
    assert again.train == flat.train
    loose = tmp_path / "loose"
    fakes.write_image(loose / "a.png", fakes.chip(np.random.default_rng(0)))
    with pytest.raises(DatasetError, match="loose.*no class folders"):
        build_listing("folder", loose)


def test_mstar_raw_tree(tmp_path):
    expected = fakes.make_mstar_raw_tree(tmp_path)
    with pytest.warns(UserWarning, match="depressions"):
        _, listing = build_listing("mstar_raw", tmp_path)
    assert _counts(listing.train) == expected["train"]
    assert _counts(listing.test) == expected["test"]
    assert listing.extra["skipped"] == {"30": 1}
    assert listing.classnames == ["BMP2", "T72"]
    _check_relative(listing)
    fakes.write_phoenix(
        tmp_path / "17_DEG" / "T72" / "HB999.000",
        np.ones((4, 4), np.float32),
        TargetType="bmp2_tank",
    )
    with pytest.warns(UserWarning):
        _, by_header = build_listing("mstar_raw", tmp_path)
        _, by_folder = build_listing("mstar_raw", tmp_path, class_from="folder")
    assert _counts(by_header.train)["BMP2"] == expected["train"]["BMP2"] + 1
    assert _counts(by_folder.train)["T72"] == expected["train"]["T72"] + 1
    empty = tmp_path / "no_raw"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no raw MSTAR files under .*no_raw"):
        build_listing("mstar_raw", empty)
