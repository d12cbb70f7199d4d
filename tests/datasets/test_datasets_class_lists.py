"""Fixed class lists (mstar_soc, fusar_ship, sar_acd, atrnet_star): unknown folders refused
unless opted in."""

from __future__ import annotations

from collections import Counter

import pytest

from sarfewshot.data.build import build_listing, build_split, dataset_options
from sarfewshot.datasets.atrnet_star import ATRNET_CLASSES
from sarfewshot.datasets.fusar_ship import FUSAR_CLASSES
from sarfewshot.datasets.mstar_soc import MSTAR_CLASSES
from sarfewshot.datasets.sar_acd import SAR_ACD_CLASSES
from sarfewshot.engine.config import get_cfg_default
from sarfewshot.errors import DatasetError
from tests import fakes

# dataset -> (tree writer, folder(s) that get an extra class, the dataset's classes)
TREES = {
    "mstar_soc": (fakes.make_mstar_soc_tree, ("MSTAR_SOC/TRAIN", "MSTAR_SOC/TEST"), MSTAR_CLASSES),
    "fusar_ship": (fakes.make_fusar_tree, ("New_FUSAR/Train", "New_FUSAR/Val"), FUSAR_CLASSES),
    "sar_acd": (fakes.make_sar_acd_tree, ("SAR_ACD/images",), SAR_ACD_CLASSES),
    "atrnet_star": (
        lambda root: fakes.make_atrnet_star_tree(root, folders=("SOC_40classes",)),
        ("SOC_40classes/train", "SOC_40classes/test"),
        ATRNET_CLASSES,
    ),
}


def _with_extra(tmp_path, name: str, extra: str = "SLICY"):
    make, split_dirs, _ = TREES[name]
    make(tmp_path)
    for sub in split_dirs:
        fakes.add_class_folder(tmp_path / sub, extra, n=10)
    return tmp_path / split_dirs[0] / extra


@pytest.mark.parametrize("name", sorted(TREES))
def test_unknown_class_folder_is_an_error_naming_it_and_the_classes(tmp_path, name):
    folder = _with_extra(tmp_path, name)
    with pytest.raises(DatasetError) as info:
        build_listing(name, tmp_path)
    message = str(info.value)
    assert str(folder) in message and f"({name}) classes" in message
    assert all(c in message for c in TREES[name][2])  # the expected classes are listed
    assert "DATASET.SAR.EXTRA_CLASSES" in message


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("flag", [True, "true"])
def test_extra_classes_opt_in_lists_them_after_the_fixed_ones(tmp_path, name, flag):
    _with_extra(tmp_path, name)
    _, listing = build_listing(name, tmp_path, extra_classes=flag)
    assert listing.classnames[-1] == "SLICY"
    assert listing.classnames[:-1] == [c for c in TREES[name][2] if c in listing.classnames]
    assert Counter(d.classname for d in listing.train + listing.test)["SLICY"] == (
        10 * len(TREES[name][1])
    )


def test_extra_class_only_in_mstar_test_is_an_error(tmp_path):
    fakes.make_mstar_soc_tree(tmp_path)
    fakes.add_class_folder(tmp_path / "MSTAR_SOC" / "TEST", "SLICY")
    with pytest.raises(DatasetError, match=r"TEST has class folder\(s\) \['SLICY'\] TRAIN lacks"):
        build_listing("mstar", tmp_path, extra_classes=True)


@pytest.mark.parametrize("name", ["fusar_ship", "atrnet_star"])
def test_extra_class_only_in_test_is_an_error_for_train_test_datasets(tmp_path, name):
    make, (train_dir, test_dir), _ = TREES[name]
    make(tmp_path)
    fakes.add_class_folder(tmp_path / test_dir, "SLICY")
    train_name = train_dir.rsplit("/", 1)[1]
    with pytest.raises(
        DatasetError, match=rf"has class folder\(s\) \['SLICY'\] {train_name} lacks"
    ):
        build_listing(name, tmp_path, extra_classes=True)


def test_only_mstar_requires_every_class_in_both_splits(tmp_path):
    """MSTAR SOC's benchmark needs all ten classes; FUSAR-Ship lists what its folders hold."""
    fakes.make_fusar_tree(tmp_path / "f")
    (tmp_path / "f" / "New_FUSAR" / "Val" / FUSAR_CLASSES[0]).rename(tmp_path / "gone")
    _, listing = build_listing("fusar_ship", tmp_path / "f")
    assert FUSAR_CLASSES[0] not in {d.classname for d in listing.test}
    fakes.make_mstar_soc_tree(tmp_path / "m")
    (tmp_path / "m" / "MSTAR_SOC" / "TRAIN" / "BMP2").rename(tmp_path / "gone_m")
    with pytest.raises(
        DatasetError, match=r"TRAIN lacks the MSTAR SOC class folder\(s\) \['BMP2'\]"
    ):
        build_listing("mstar_soc", tmp_path / "m")


def test_bad_extra_classes_value_is_an_error(tmp_path):
    fakes.make_fusar_tree(tmp_path)
    with pytest.raises(DatasetError, match="extra_classes='maybe'"):
        build_listing("fusar", tmp_path, extra_classes="maybe")


def test_config_key_flows_into_the_plugin(tmp_path):
    _with_extra(tmp_path, "fusar_ship")
    cfg = get_cfg_default()
    cfg.DATASET.NAME, cfg.DATASET.ROOT = "fusar_ship", str(tmp_path)
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    assert dataset_options("fusar_ship", cfg) == {}
    with pytest.raises(DatasetError, match="SLICY"):
        build_split(cfg)
    cfg.DATASET.SAR.EXTRA_CLASSES = True
    assert dataset_options("fusar_ship", cfg) == {"extra_classes": True}
    _, listing, _ = build_split(cfg)
    assert "SLICY" in listing.classnames


def test_spelling_variants_map_to_the_class(tmp_path):
    fakes.add_class_folder(tmp_path / "New_FUSAR" / "Train", "coastal-lands-island", n=3)
    fakes.add_class_folder(tmp_path / "New_FUSAR" / "Val", "CoastalLands_island", n=2)
    _, fusar = build_listing("fusar", tmp_path)
    assert fusar.classnames == ["CoastalLands_island"] and len(fusar.train) == 3
    fakes.add_class_folder(tmp_path / "SAR_ACD" / "images", "boeing_737", n=4)
    _, acd = build_listing("sar_acd", tmp_path)
    assert acd.classnames == ["Boeing737"]
