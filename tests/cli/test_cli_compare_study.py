"""The MSTAR study script's report stage: paired differences marked by Holm-adjusted p."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from sarfewshot.results.records import write_record
from tests.results.recordkit import SHA_A, SHA_B, fake_record

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mstar_study.sh"
RANDOM = "random@irpe:patch=8,dim=128,depth=4,heads=4"  # the script's IRPE_ARCH label


# sarjepa - lomar: one group with unadjusted p ~ 0.018 (its t CI excludes 0, so the former
# script bolded it) that Holm over the 8 groups lifts above 0.05; the others centre on 0.
CLOSE = (1.0, 3.0, 0.5, 2.5, 2.0)
LEVEL = (1.0, -1.0, 2.0, -2.0, 0.5)
FAR = (19.0, 21.0, 20.5, 19.5, 20.2)  # sarjepa - random: significant everywhere


def _study_records(out: Path) -> None:
    rng = random.Random(11)
    for protocol in ("linear", "knn"):
        for shots in (1, 5, 10, 20):
            lomar = CLOSE if (protocol, shots) == ("linear", 1) else LEVEL
            for seed in range(1, 6):
                base = rng.uniform(40, 60)
                for name, sha, acc in (
                    ("sarjepa", SHA_A, base),
                    ("lomar", SHA_B, base - lomar[seed - 1]),
                    (RANDOM, None, base - FAR[seed - 1]),
                ):
                    rec = fake_record(
                        backbone=name, sha=sha, protocol=protocol, shots=shots, seed=seed, acc=acc
                    )
                    write_record(out / "eval", rec)


@pytest.mark.slow
def test_study_report_marks_holm_adjusted_differences(tmp_path):
    out, docs = tmp_path / "out", tmp_path / "docs"
    _study_records(out)
    env = {
        **os.environ,
        "OUT": str(out),
        "DOCS": str(docs),
        "METHODS": "sarjepa lomar",
        "STAGES": "report",
        "SFS": f"{sys.executable} -m sarfewshot",
        "PY": sys.executable,
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    summary = (out / "summary.md").read_text()
    rows = {
        tuple(c.strip() for c in ln.strip("|").split("|")[:2]): ln
        for ln in summary.splitlines()
        if ln.startswith("| lomar") or ln.startswith("| random")
    }
    assert set(rows) == {(b, p) for b in ("lomar", "random") for p in ("knn", "linear")}
    assert rows[("random", "linear")].count("**") == rows[("random", "knn")].count("**") == 8
    close = rows[("lomar", "linear")].split("|")[3]
    assert close.strip().startswith("+1.8 [+0.5, +3.1], p 0.1")  # CI excludes 0, Holm p does not
    assert "**" not in rows[("lomar", "linear")] + rows[("lomar", "knn")]
    assert all(ln.count(", p ") == 4 for ln in rows.values())
    assert "adjusted with holm over the (protocol, K) groups" in summary
    assert "bold: adjusted p < 0.05" in summary and "optimistic" in summary
    header = (out / "compare_sarjepa_vs_lomar.csv").read_text().splitlines()[0]
    assert "p_t_adj" in header and "p_adjust" in header
