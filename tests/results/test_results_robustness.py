"""The robustness table: accuracy per condition, the paired drop from id, its CSV."""

from __future__ import annotations

import csv
import io

import pytest
from scipy import stats

from sarfewshot.results.robustness import (
    ROBUSTNESS_COLUMNS,
    has_conditions,
    robustness_csv,
    robustness_rows,
    robustness_text,
)
from tests.results.recordkit import fake_record

SETTING = "atrnet_star_eoc_scene"


def _cond(condition: str, seed: int, acc: float, split: str | None = None) -> dict:
    rec = fake_record(
        dataset=f"{SETTING}:{condition}",
        seed=seed,
        acc=acc,
        split_sha=split or f"split-{seed}",
        protocol="knn",
        shots=1,
    )
    rec["key"].update(setting=SETTING, condition=condition)
    return rec


def test_drop_is_paired_over_seeds_with_the_t_interval():
    ids, scene = [90.0, 92.0, 94.0], [80.0, 81.0, 85.0]
    records = [_cond("id", s, a) for s, a in zip((1, 2, 3), ids)]
    records += [_cond("scene", s, a) for s, a in zip((1, 2, 3), scene)]
    records.append(_cond("scene_urban", 1, 70.0, split="another split"))  # not paired
    records.append(fake_record(dataset="mstar", acc=75.0))  # a plain record reads as id
    assert has_conditions(records) and not has_conditions(records[-1:])
    rows = {(r.setting, r.condition): r for r in robustness_rows(records)}
    assert set(rows) == {(SETTING, "id"), (SETTING, "scene"), (SETTING, "scene_urban"),
                         ("mstar", "id")}  # fmt: skip
    scene_row = rows[(SETTING, "scene")]
    assert scene_row.acc_mean == pytest.approx(82.0)
    assert scene_row.drop == pytest.approx(10.0) and scene_row.n_pairs == 3
    half = stats.t.ppf(0.975, 2) * 1.0 / 3**0.5  # differences 10, 11, 9: sample std 1
    assert scene_row.drop_ci_low == pytest.approx(10.0 - half)
    assert scene_row.drop_ci_high == pytest.approx(10.0 + half)
    assert rows[(SETTING, "scene_urban")].drop is None  # its split differs from id's
    assert rows[(SETTING, "id")].drop is None and rows[("mstar", "id")].acc_mean == 75.0
    ordered = [r.condition for r in robustness_rows(records) if r.setting == SETTING]
    assert ordered == ["id", "scene", "scene_urban"]


def test_text_and_csv_have_the_same_columns():
    records = [_cond("id", 1, 90.0), _cond("scene", 1, 80.0)]
    rows = robustness_rows(records)
    parsed = list(csv.DictReader(io.StringIO(robustness_csv(rows))))
    assert tuple(parsed[0]) == ROBUSTNESS_COLUMNS
    assert float(parsed[1]["drop"]) == 10.0 and parsed[1]["drop_ci_low"] == ""  # one pair
    text = robustness_text(rows)
    header = text.splitlines()[1]
    assert [h.strip() for h in header.strip("|").split("|")] == list(ROBUSTNESS_COLUMNS)
