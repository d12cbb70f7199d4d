"""Results never mix dataset versions; nothing computed is lost or silently wrong.

Driven through the real CLI on copies of a few real MSTAR chips (skipped without
``../shared``) and on a synthetic tree.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from sarfewshot.cli.main import main
from sarfewshot.datasets.synthetic import generate_synthetic
from sarfewshot.results.records import record_files

GRID = ["--backbone", "random", "--arch", "irpe_vit_micro_patch8", "--img-size", "32"]


def _mstar_copy(src: Path, dest: Path, per_class: int = 3) -> Path:
    """A small copy of the MSTAR SOC tree: ``per_class`` chips per class and split."""
    for split in ("TRAIN", "TEST"):
        for cls in sorted(p for p in (src / "MSTAR_SOC" / split).iterdir() if p.is_dir()):
            chips = sorted(p for p in cls.rglob("*") if p.is_file())[:per_class]
            out = dest / "MSTAR_SOC" / split / cls.name
            out.mkdir(parents=True)
            for chip in chips:
                shutil.copy(chip, out / chip.name)
    return dest


def _eval(root: Path, out: Path, *extra: str, seeds: str = "1,2") -> int:
    args = ["eval", *GRID, "--dataset", "mstar", "--root", str(root), "--shots", "1"]
    return main([*args, "--protocol", "knn", "--seeds", seeds, "--output", str(out), *extra])


def _accuracies(out: Path) -> dict[str, float]:
    return {p.name: json.loads(p.read_text())["metrics"]["accuracy"] for p in record_files(out)}


@pytest.fixture
def mstar_copy(mstar_soc_root, tmp_path) -> Path:
    return _mstar_copy(mstar_soc_root, tmp_path / "data")


@pytest.mark.realdata
def test_added_chips_make_finished_cells_stale(mstar_copy, tmp_path, capsys):
    out = tmp_path / "runs"
    assert _eval(mstar_copy, out) == 0
    record = json.loads(record_files(out)[0].read_text())
    assert record["dataset"]["fingerprint"]["method"] == "content"
    # the backbone section says how the chip was fed and which feature the head saw
    assert record["backbone"]["input"] == {"kind": "grey1", "channels": 1}
    assert record["backbone"]["feature"]
    test_dir = mstar_copy / "MSTAR_SOC" / "TEST" / "T72"
    shutil.copy(next(test_dir.iterdir()), test_dir / "extra_chip.jpeg")
    capsys.readouterr()
    assert _eval(mstar_copy, out, seeds="1,2,3") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "2 finished cell(s) of dataset 'mstar_soc'" in err
    assert "--force" in err and "--output" in err
    assert len(record_files(out)) == 2  # nothing ran, nothing was mixed in


@pytest.mark.realdata
def test_force_after_an_in_place_change_gives_the_new_accuracies(mstar_copy, tmp_path):
    out = tmp_path / "runs"
    assert _eval(mstar_copy, out) == 0
    before = _accuracies(out)
    # Same names, other contents: every test chip becomes the first BMP2 chip.
    test_root = mstar_copy / "MSTAR_SOC" / "TEST"
    donor = sorted((test_root / "BMP2").iterdir())[0].read_bytes()
    for chip in test_root.rglob("*.jpeg"):
        chip.write_bytes(donor)
    assert _eval(mstar_copy, out) == 2  # stale, not "already done"
    assert _eval(mstar_copy, out, "--force") == 0
    fresh = tmp_path / "fresh"
    assert _eval(mstar_copy, fresh) == 0
    assert _accuracies(out) == _accuracies(fresh) != before


@pytest.mark.realdata
def test_leaderboard_keeps_dataset_versions_apart(mstar_copy, tmp_path, capsys):
    assert _eval(mstar_copy, tmp_path / "v1", seeds="1") == 0
    test_dir = mstar_copy / "MSTAR_SOC" / "TEST" / "D7"
    test_dir.joinpath("extra_chip.jpeg").write_bytes(next(test_dir.iterdir()).read_bytes())
    assert _eval(mstar_copy, tmp_path / "v2", seeds="2") == 0
    capsys.readouterr()
    csv = tmp_path / "board.csv"
    assert main(["leaderboard", str(tmp_path / "v1"), str(tmp_path / "v2"), "--csv", str(csv)]) == 0
    captured = capsys.readouterr()
    assert "versions of the dataset folder" in captured.err
    rows = [line for line in captured.out.splitlines() if line.startswith("| random")]
    assert len(rows) == 2 and all("{data " in row for row in rows)
    lines = csv.read_text().splitlines()[1:]
    assert len(lines) == 2 and all(",1,1," in line or ",1,2," in line for line in lines)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    return generate_synthetic(
        out, n_train_per_class=4, n_test_per_class=2, size=48, progress_bar=False
    )


def _synth_eval(root: Path, out: Path, *extra: str) -> int:
    args = ["eval", *GRID, "--dataset", "synthetic", "--root", str(root), "--shots", "1"]
    return main([*args, "--seeds", "1", "--output", str(out), *extra, "INPUT.SAR.CROP", "0"])


def test_a_huge_learning_rate_is_recorded_diverged(synth, tmp_path, capsys):
    out = tmp_path / "runs"
    code = _synth_eval(
        synth, out, "--protocol", "linear", "OPTIM.LR", "1e9", "OPTIM.MAX_EPOCH", "5"
    )
    assert code == 1
    record = json.loads(record_files(out)[0].read_text())
    assert record["status"] == "diverged"
    assert "more than 10x its start" in record["error"]
    printed = capsys.readouterr().out
    assert "no result (1 diverged)" in printed and "have no result" in printed


def test_files_are_readable_by_the_lab(synth, tmp_path):
    old = os.umask(0o022)
    try:
        assert _synth_eval(synth, tmp_path / "runs", "--protocol", "knn") == 0
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".json", ".npy", ".csv"} <= kinds
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}


def test_an_output_that_is_a_file_is_one_line_and_exit_2(synth, tmp_path, capsys):
    target = tmp_path / "runs"
    target.write_text("not a folder")
    assert _synth_eval(synth, target, "--protocol", "knn") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(target) in err and "Traceback" not in err
    assert target.read_text() == "not a folder"


def test_a_full_disk_is_one_line_and_debug_shows_the_traceback(
    synth, tmp_path, capsys, monkeypatch
):
    import errno

    from sarfewshot.utils import io

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", full)
    assert _synth_eval(synth, tmp_path / "runs", "--protocol", "knn") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert _synth_eval(synth, tmp_path / "runs", "--protocol", "knn", "--debug") == 2
    assert "Traceback" in capsys.readouterr().err


def test_redirected_runs_print_progress_and_tensorboard_logs(synth, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SARFEWSHOT_NO_PROGRESS", raising=False)
    monkeypatch.setenv("SARFEWSHOT_PROGRESS_INTERVAL", "0")
    out = tmp_path / "runs"
    code = _synth_eval(synth, out, "--protocol", "linear", "--tensorboard", "OPTIM.MAX_EPOCH", "3")
    assert code == 0
    printed = capsys.readouterr().out
    assert "[features] batch" in printed and "epoch 3/3 (100%)" in printed
    events = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(events) == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert {"train/loss", "train/lr"} <= set(acc.Tags()["scalars"])
    assert len(acc.Scalars("train/loss")) == 3


def test_a_replaced_chip_makes_finished_cells_stale_on_a_synthetic_tree(tmp_path, capsys):
    """The stale-cell check without ../shared: one chip replaced in place (same name, other
    bytes) stops the next run before it computes anything (exit 2); --force recomputes."""
    root = generate_synthetic(
        tmp_path / "synth", n_train_per_class=2, n_test_per_class=1, size=32, progress_bar=False
    )
    out = tmp_path / "runs"
    assert _synth_eval(root, out, "--protocol", "knn") == 0
    (record,) = record_files(out)
    written = record.read_bytes()
    chips = sorted(p for p in (root / "test").rglob("*") if p.is_file())
    chips[0].write_bytes(chips[1].read_bytes())  # same listing, other contents
    capsys.readouterr()
    assert _synth_eval(root, out, "--protocol", "knn") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "1 finished cell(s) of dataset 'synthetic'" in err
    assert "--force" in err and "--output" in err
    assert record.read_bytes() == written  # nothing ran, nothing was overwritten
    assert _synth_eval(root, out, "--protocol", "knn", "--force") == 0
    fresh = json.loads(record.read_text())
    old = json.loads(written)
    assert fresh["dataset"]["fingerprint"] != old["dataset"]["fingerprint"]


@pytest.mark.realdata
def test_compare_refuses_cells_of_two_dataset_versions(mstar_copy, tmp_path, capsys):
    """One TEST chip replaced in place: the split files agree, the test sets do not."""
    assert _eval(mstar_copy, tmp_path / "v1") == 0
    chip = sorted((mstar_copy / "MSTAR_SOC" / "TEST" / "T72").iterdir())[0]
    chip.write_bytes(sorted((mstar_copy / "MSTAR_SOC" / "TEST" / "D7").iterdir())[0].read_bytes())
    other = "irpe:patch=8,dim=32,depth=1,heads=2"
    assert _eval(mstar_copy, tmp_path / "v2", "--arch", other) == 0
    a, b = "random@irpe_vit_micro_patch8", f"random@{other}"
    fa, fb = (
        json.loads(record_files(tmp_path / v)[0].read_text())["dataset"]["fingerprint"]["sha256"]
        for v in ("v1", "v2")
    )
    assert fa != fb
    capsys.readouterr()
    runs = [str(tmp_path / "v1"), str(tmp_path / "v2")]
    assert main(["compare", *runs, "--a", a, "--b", b]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert fa[:12] in err and fb[:12] in err and "--allow-data-change" in err
    out_csv = tmp_path / "cmp.csv"
    args = ["compare", *runs, "--a", a, "--b", b, "--csv", str(out_csv)]
    assert main([*args, "--allow-data-change"]) == 0
    printed = capsys.readouterr().out
    assert "paired across dataset versions" in printed and fa[:12] in printed
    lines = out_csv.read_text().splitlines()[1:]
    assert lines and all("paired across dataset versions" in line for line in lines)


def test_a_version_conflict_in_the_table_is_one_warning_line(tmp_path, capsys):
    """Shard 2 runs after the folder changed: its table warns in one line, no source line."""
    data = generate_synthetic(
        tmp_path / "data", n_train_per_class=4, n_test_per_class=2, size=48, progress_bar=False
    )
    out = tmp_path / "runs"
    base = ["--protocol", "knn", "--seeds", "1,2"]
    assert _synth_eval(data, out, *base, "--shard", "1/2") == 0
    chip = next(p for p in sorted(data.rglob("*.png")) if "test" in p.parts)
    chip.write_bytes(next(p for p in sorted(data.rglob("*.png")) if p != chip).read_bytes())
    capsys.readouterr()
    assert _synth_eval(data, out, *base, "--shard", "2/2") == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "versions of the dataset folder" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: ")
    assert "VersionConflictWarning" not in err and "warnings.warn" not in err
