"""ATRNet-STAR: every layout, every ATRBench setting, test subsets, class list, config keys."""

from __future__ import annotations

from collections import Counter

import pytest

from sarfewshot.cli.main import main
from sarfewshot.data.build import build_listing, build_split, dataset_options, split_name
from sarfewshot.datasets.atrnet_star import ATRNET_CLASSES, SETTINGS
from sarfewshot.datasets.mstar_soc import MSTAR_CLASSES
from sarfewshot.engine.config import get_cfg_default
from sarfewshot.errors import ConfigError, DatasetError
from tests import fakes


def _counts(items) -> dict:
    return dict(Counter(d.classname for d in items))


def _canonical(counts: dict) -> dict:
    # the fake's folder names -> the plug-in's class names (the MSTAR spelling BRDM_2 -> BRDM2)
    return {{"BRDM_2": "BRDM2"}.get(k, k): v for k, v in counts.items()}


@pytest.mark.parametrize("layout", ["bench", "hf"])
def test_every_layout_lists_the_same_soc40_chips(tmp_path, layout):
    expected = fakes.make_atrnet_star_tree(tmp_path, layout, folders=("SOC_40classes",))
    ds, listing = build_listing("atrnet_star", tmp_path)
    assert ds.setting == "soc40" and ds.crop_size == 128 and ds.val_fraction == 0.2
    assert listing.classnames == [c for c in ATRNET_CLASSES if c in fakes.ATRNET_FAKE_CLASSES]
    assert _counts(listing.train) == expected["SOC_40classes"]["train"]  # .xml files skipped
    assert _counts(listing.test) == expected["SOC_40classes"]["test"]
    assert all(d.impath.endswith(".tif") and (listing.root / d.impath).is_file()
               for d in listing.train + listing.test)  # fmt: skip
    setting_dir = listing.root
    _, direct = build_listing("atrnet", setting_dir)  # root may be the setting folder itself
    assert direct.sha256() == listing.sha256()


@pytest.fixture(scope="module")
def hf_tree(tmp_path_factory):
    """Every setting folder of the Hugging Face layout (all 40 types: written once)."""
    root = tmp_path_factory.mktemp("atrnet_hf")
    return root, fakes.make_atrnet_star_tree(root, "hf")


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_each_setting_reads_its_own_folders(hf_tree, setting):
    tmp_path, expected = hf_tree
    spec = SETTINGS[setting]
    ds, listing = build_listing("atrnet_star", tmp_path, setting=setting)
    truth = expected[spec.folder]
    assert listing.root.name == spec.folder
    assert _counts(listing.train) == _canonical(truth[spec.train])
    assert _counts(listing.test) == _canonical(truth[spec.test])
    assert split_name(ds) == f"atrnet_star_{setting}"


def test_band_inverse_swaps_train_and_test(tmp_path):
    fakes.make_atrnet_star_tree(tmp_path, folders=("EOC_band",), n_train=3, n_test=1)
    _, band = build_listing("atrnet_star", tmp_path, setting="eoc_band")
    _, inverse = build_listing("atrnet_star", tmp_path, setting="EOC-band_inverse")
    assert [d.impath for d in band.train] == [d.impath for d in inverse.test]
    assert [d.impath for d in band.test] == [d.impath for d in inverse.train]


def test_soc50_adds_the_mstar_classes(tmp_path):
    fakes.make_atrnet_star_tree(tmp_path, folders=("SOC_50classes", "SOC_40classes"))
    _, listing = build_listing("atrnet_star", tmp_path, setting="soc50")
    assert listing.classnames[40:] == list(MSTAR_CLASSES)  # after the 40 types
    fakes.add_class_folder(tmp_path / "SOC_40classes" / "train", "BRDM_2")
    with pytest.raises(DatasetError, match="BRDM_2 is not one of the ATRNet-STAR"):
        build_listing("atrnet_star", tmp_path, setting="soc40")  # only soc50 has MSTAR


def test_test_subset_reads_one_condition_with_its_own_split_name(tmp_path):
    expected = fakes.make_atrnet_star_tree(tmp_path, folders=("EOC_depression",), n_test=2)
    ds, listing = build_listing("atrnet_star", tmp_path, setting="eoc_depression", test_subset=45)
    assert _counts(listing.test) == expected["EOC_depression"]["test_45"]
    assert all(d.impath.startswith("test_45/") for d in listing.test)
    assert split_name(ds) == "atrnet_star_eoc_depression_test45"
    with pytest.raises(ConfigError, match=r"test_subset '20'.*\['30', '45', '60'\]"):
        build_listing("atrnet_star", tmp_path, setting="eoc_depression", test_subset="20")
    with pytest.raises(ConfigError, match="not one of setting soc40's none"):
        build_listing("atrnet_star", tmp_path, test_subset="45")


def test_bad_setting_and_missing_setting_folder(tmp_path):
    fakes.make_atrnet_star_tree(tmp_path, folders=("SOC_40classes",))
    with pytest.raises(ConfigError, match=r"setting 'soc10'.*ATRNET_SETTING.*eoc_azimuth"):
        build_listing("atrnet_star", tmp_path, setting="soc10")
    with pytest.raises(DatasetError, match=r"no EOC_pol folder \(ATRNet-STAR setting eoc_pol"):
        build_listing("atrnet_star", tmp_path, setting="eoc_polarization")


def test_config_keys_choose_the_setting_and_the_split_folder(tmp_path):
    fakes.make_atrnet_star_tree(tmp_path, folders=("EOC_pol",), n_train=3)
    cfg = get_cfg_default()
    cfg.DATASET.NAME, cfg.DATASET.ROOT = "atrnet_star", str(tmp_path)
    cfg.OUTPUT_DIR, cfg.DATASET.NUM_SHOTS, cfg.SEED = str(tmp_path / "out"), 1, 1
    cfg.DATASET.SAR.ATRNET_SETTING = "eoc_polarization"
    cfg.DATASET.SAR.ATRNET_TEST_SUBSET = "VV"
    assert dataset_options("atrnet_star", cfg) == {"setting": "eoc_polarization",
                                                   "test_subset": "VV"}  # fmt: skip
    _, listing, split = build_split(cfg)
    assert {d.impath.split("/")[0] for d in split.test} == {"test_VV"}
    assert (tmp_path / "out" / "splits" / "atrnet_star_eoc_polarization_testvv").is_dir()


def test_data_list_shows_atrnet_star_and_its_settings(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "atrnet_star" in out and "DATASET.SAR.ATRNET_SETTING" in out
    for name, spec in SETTINGS.items():
        assert f"  {name}: {spec.folder}" in out


def _drop(folder, names) -> None:
    import shutil

    for name in names:
        shutil.rmtree(folder / name)


def test_a_setting_with_type_folders_missing_is_refused_naming_them(tmp_path):
    fakes.make_atrnet_star_tree(tmp_path, folders=("SOC_40classes", "EOC_scene"), n_train=1)
    soc = tmp_path / "SOC_40classes"
    _drop(soc / "train", ATRNET_CLASSES[5:])  # 5 of the 40 types in train ...
    _drop(soc / "test", ATRNET_CLASSES[5:])  # ... and in test
    with pytest.raises(DatasetError) as err:
        build_listing("atrnet_star", tmp_path)
    text = str(err.value)
    assert f"{soc / 'train'} has 5 of the 40 type folders" in text and ATRNET_CLASSES[5] in text
    assert "and 25 more" in text and "DATASET.SAR.ALLOW_MISSING_CLASSES" in text
    _drop(tmp_path / "EOC_scene" / "test", ["Hongqi_h5"])  # one test type of an EOC setting
    with pytest.raises(
        DatasetError, match=r"test has 39 of the 40 type folders \(missing: Hongqi_h5\)"
    ):
        build_listing("atrnet_star", tmp_path, setting="eoc_scene")
    _, listing = build_listing(
        "atrnet_star", tmp_path, setting="eoc_scene", allow_missing_classes=True
    )
    assert listing.extra["missing_classes"] == {"test": ["Hongqi_h5"]}
    assert len(listing.classnames) == 40  # train still has every type


def test_the_woodland_test_set_has_its_11_types(tmp_path):
    expected = fakes.make_atrnet_star_tree(tmp_path, folders=("EOC_scene",), n_train=1)
    assert len(expected["EOC_scene"]["test_woodland"]) == 11
    _, listing = build_listing("atrnet_star", tmp_path, setting="eoc_scene", test_subset="woodland")
    assert len({d.classname for d in listing.test}) == 11 and "missing_classes" not in listing.extra
    _drop(tmp_path / "EOC_scene" / "test_woodland", [ATRNET_CLASSES[0]])
    with pytest.raises(DatasetError, match=r"test_woodland has 10 type folders, ATRBench's has 11"):
        build_listing("atrnet_star", tmp_path, setting="eoc_scene", test_subset="woodland")


TINY = ["--backbone", "random", "--arch", "irpe_vit_micro_patch8", "--img-size", "32"]


def _eval(root, out, setting: str, subset: str = "", *opts: str) -> int:
    args = ["eval", *TINY, "--dataset", "atrnet_star", "--root", str(root), "--shots", "1"]
    args += ["--protocol", "knn", "--seeds", "1", "--output", str(out), "INPUT.SAR.CROP", "0"]
    args += ["DATASET.SAR.ATRNET_SETTING", setting, "DATASET.SAR.ATRNET_TEST_SUBSET", subset]
    return main([*args, *opts])


def test_eval_marks_missing_types_and_the_leaderboard_names_settings(tmp_path, capsys):
    import json

    from sarfewshot.results.records import record_files

    root = tmp_path / "data"
    fakes.make_atrnet_star_tree(root, folders=("SOC_40classes", "EOC_scene"))
    _drop(root / "EOC_scene" / "test_urban", ["Hongqi_h5"])
    assert _eval(root, tmp_path / "urban", "eoc_scene", "urban") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "test_urban has 39 of the 40" in err
    assert "Hongqi_h5" in err and not (tmp_path / "urban").exists()
    allow = ("DATASET.SAR.ALLOW_MISSING_CLASSES", "True")
    assert _eval(root, tmp_path / "urban", "eoc_scene", "urban", *allow) == 0
    out = capsys.readouterr().out
    assert "‡" in out and "class folders missing" in out
    record = json.loads(record_files(tmp_path / "urban")[0].read_text())
    assert record["dataset"]["missing_classes"] == {"test_urban": ["Hongqi_h5"]}
    assert _eval(root, tmp_path / "soc40", "soc40") == 0
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path / "soc40"), str(tmp_path / "urban")]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| random")]
    assert len(rows) == 2
    assert any("{soc40, cfg " in r for r in rows)
    assert any("{eoc_scene test_urban, cfg " in r and "‡" in r for r in rows)


def test_atrnet_test_conditions_per_setting(tmp_path):
    expected = fakes.make_atrnet_star_tree(tmp_path, folders=("EOC_pol", "SOC_40classes"))
    ds, listing = build_listing("atrnet_star", tmp_path, setting="eoc_polarization")
    conds = ds.test_conditions(listing)
    assert [c.name for c in conds] == [
        "id",
        "polarization",
        "polarization_vv",
        "polarization_hv",
        "polarization_vh",
    ]
    assert [c.part for c in conds] == ["val", "test", "extra", "extra", "extra"]
    vv = conds[2]
    assert len(vv.items) == sum(expected["EOC_pol"]["test_VV"].values())
    assert all(d.impath.startswith("test_VV/") for d in vv.items)
    assert {d.classname for d in vv.items} <= set(listing.classnames)
    soc, soc_listing = build_listing("atrnet_star", tmp_path, setting="soc40")
    assert [(c.name, c.part) for c in soc.test_conditions(soc_listing)] == [("id", "test")]
    one, one_listing = build_listing(
        "atrnet_star", tmp_path, setting="eoc_polarization", test_subset="HV"
    )
    assert [c.name for c in one.test_conditions(one_listing)] == ["id", "polarization_hv"]


def test_condition_folders_with_types_missing_are_refused_or_marked(tmp_path):
    """``eval --conditions`` scores every ``test_<subset>`` folder: one with a type missing is
    refused as the listing's folders are, and marked when allowed."""
    fakes.make_atrnet_star_tree(tmp_path, folders=("EOC_scene",), n_train=1)
    woodland = tmp_path / "EOC_scene" / "test_woodland"
    gone = sorted(p.name for p in woodland.iterdir())[0]
    _drop(woodland, [gone])
    ds, listing = build_listing("atrnet_star", tmp_path, setting="eoc_scene")
    with pytest.raises(DatasetError, match=r"test_woodland has 10 type folders, ATRBench's has 11"):
        ds.test_conditions(listing)
    ds, listing = build_listing(
        "atrnet_star", tmp_path, setting="eoc_scene", allow_missing_classes=True
    )
    assert "scene_woodland" in [c.name for c in ds.test_conditions(listing)]
    assert gone in listing.extra["missing_classes"]["test_woodland"]
