"""`sarfewshot data list|verify|synth|export-splits|import-splits`."""

from __future__ import annotations

import re

import pytest

from sarfewshot.cli.main import main
from sarfewshot.data.build import build_listing
from sarfewshot.data.splits import load_or_make_split
from tests import fakes


def test_data_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "mstar_soc",
        "fusar_ship",
        "sar_acd",
        "sample",
        "folder",
        "mstar_raw",
        "synthetic",
        "MSTAR_SOC/TRAIN",
    ):
        assert name in out


def test_verify_fake_tree_counts_and_bad_files(tmp_path, capsys):
    fakes.make_mstar_soc_tree(tmp_path, n_train=2, n_test=1)
    assert main(["data", "verify", "--dataset", "mstar", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"train\s+total\s+20\s", out) and re.search(r"test\s+total\s+10\s", out)
    assert "20 train and 10 test images" in out and "all 30 images decoded" in out
    assert re.search(r"train\s+BRDM2\s+2\s+\d+x\d+", out)  # per class counts and chip sizes
    bad = tmp_path / "MSTAR_SOC" / "TEST" / "D7" / "broken.jpeg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    assert main(["data", "verify", "--dataset", "mstar", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "1 unreadable file" in err and "broken.jpeg" in err
    assert (
        main(["data", "verify", "--dataset", "mstar", "--root", str(tmp_path), "--no-decode"]) == 0
    )


def test_verify_wrong_layout_and_unknown_dataset(tmp_path, capsys):
    fakes.make_folder_tree(tmp_path, split=False)
    assert main(["data", "verify", "--dataset", "fusar", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "New_FUSAR/Train" in err and str(tmp_path) in err
    assert main(["data", "verify", "--dataset", "nope", "--root", str(tmp_path)]) == 2
    assert "available: " in capsys.readouterr().err
    assert (
        main(["data", "verify", "--dataset", "sample", "--root", str(tmp_path), "--option", "mode"])
        == 2
    )
    assert "KEY=VALUE" in capsys.readouterr().err


def test_synth_then_verify(tmp_path, capsys):
    out_dir = tmp_path / "synth"
    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(out_dir),
                "--train-per-class",
                "2",
                "--test-per-class",
                "1",
                "--size",
                "32",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert main(["data", "verify", "--dataset", "synthetic", "--root", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"train\s+total\s+20\s+32x32", out)


def test_export_import_splits(tmp_path, capsys):
    fakes.make_folder_tree(tmp_path / "data", split=True)
    _, listing = build_listing("folder", tmp_path / "data")
    load_or_make_split(tmp_path / "a", listing, "folder-data", 0, 1, 0.2)
    bundle = tmp_path / "bundle.json"
    assert (
        main(["data", "export-splits", "--split-dir", str(tmp_path / "a"), "--out", str(bundle)])
        == 0
    )
    assert (
        main(["data", "import-splits", "--in", str(bundle), "--split-dir", str(tmp_path / "b")])
        == 0
    )
    assert "imported 1 split file" in capsys.readouterr().out
    assert (tmp_path / "b" / "folder-data" / "shot_1-seed_0.json").is_file()


@pytest.mark.realdata
def test_verify_shared_mstar(mstar_soc_root, capsys):
    """The full verify (every one of the 5171 JPEGs decoded) on the shared MSTAR tree."""
    assert main(["data", "verify", "--dataset", "mstar", "--root", str(mstar_soc_root)]) == 0
    out = capsys.readouterr().out
    assert "2746 train and 2425 test images" in out and "all 5171 images decoded" in out
    assert re.search(r"train\s+T62\s+298\s", out) and re.search(r"test\s+BMP2\s+195\s", out)


def test_data_list_name_prints_the_fixed_class_list(capsys):
    from sarfewshot.datasets.mstar_soc import MSTAR_CLASSES

    assert main(["data", "list", "mstar"]) == 0  # an alias works
    out = capsys.readouterr().out
    assert out.startswith("dataset mstar_soc (aliases: mstar)")
    for label, name in enumerate(MSTAR_CLASSES):
        assert f"{label:3d}: {name}\n" in out
    assert main(["data", "list", "folder"]) == 0
    assert "no fixed list" in capsys.readouterr().out
    assert main(["data", "list"]) == 0
    table = capsys.readouterr().out
    assert "10 fixed" in table and "40 fixed" in table and "data list NAME" in table


def test_data_list_unknown_name_lists_the_names(capsys):
    assert main(["data", "list", "nope"]) == 2
    assert "mstar_soc" in capsys.readouterr().err


def test_a_stray_argument_shows_the_subcommands_usage(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["data", "list", "mstar", "extra"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: sarfewshot data list")
    assert "sarfewshot data list: error: unrecognized arguments: extra" in err
