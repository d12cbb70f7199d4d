"""PNG pictures of the leaderboard (skipped without matplotlib)."""

from __future__ import annotations

import pytest

from sarfewshot.results.aggregate import aggregate_records
from sarfewshot.results.plots import mean_confusion, plot_confusion, plot_confusions, plot_shots
from tests.results.recordkit import fake_record

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"


def _records():
    recs = []
    for backbone, sha in (("sarjepa", "a" * 64), ("random", None)):
        for protocol in ("linear", "knn"):
            for shots in (1, 5, 10):
                for seed in (1, 2):
                    recs.append(
                        fake_record(
                            backbone=backbone,
                            sha=sha,
                            protocol=protocol,
                            shots=shots,
                            seed=seed,
                            acc=50.0 + shots + seed,
                        )
                    )
    return recs


def test_plot_shots_one_png_per_dataset_protocol(tmp_path):
    paths = plot_shots(aggregate_records(_records()), tmp_path / "plots")
    assert [p.name for p in paths] == ["shots_mstar_knn.png", "shots_mstar_linear.png"]
    assert all(p.read_bytes()[:8] == PNG for p in paths)


def test_confusion_pictures(tmp_path):
    recs = [
        fake_record(seed=1, cmat=[[4, 2, 0], [0, 6, 0], [0, 0, 6]]),
        fake_record(seed=2, cmat=[[6, 0, 0], [0, 4, 2], [0, 0, 6]]),
    ]
    cmat, names = mean_confusion(recs)
    assert cmat == [[5.0, 1.0, 0.0], [0.0, 5.0, 1.0], [0.0, 0.0, 6.0]]
    assert names == ["2S1", "BMP2", "T72"]
    one = plot_confusion(recs[0], None, tmp_path / "one.png", title="seed 1")
    assert one.read_bytes()[:8] == PNG
    paths = plot_confusions(aggregate_records(recs), tmp_path)
    assert len(paths) == 1 and paths[0].name.startswith("confusion_sarjepa_aaaaaaaa_mstar_")
    assert paths[0].read_bytes()[:8] == PNG


def test_error_bars_stay_within_0_and_100():
    from sarfewshot.results.plots import clipped_errors

    lower, upper = clipped_errors([12.0, 50.0, 97.0], [30.0, 10.0, 8.0])
    assert lower == [12.0, 10.0, 8.0] and upper == [30.0, 10.0, 3.0]
