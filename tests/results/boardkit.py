"""Records for the board tests: three backbones (one with a hostile name), two protocols,
K = 1 and 5, three seeds, distinct per-class accuracies; plus a failed and a diverged cell."""

from __future__ import annotations

from typing import Any

from tests.results.recordkit import CLASSES, SHA_A, SHA_B, fake_record

EVIL = "<script>alert(1)</script>"
# base accuracy per (backbone, protocol): the orders differ between the protocols
BASE = {
    ("sarjepa", "linear"): 70.0,
    ("random", "linear"): 50.0,
    (EVIL, "linear"): 60.0,
    ("sarjepa", "knn"): 55.0,
    ("random", "knn"): 65.0,
    (EVIL, "knn"): 45.0,
}
SHAS = {"sarjepa": SHA_A, "random": None, EVIL: SHA_B}


def board_record(backbone: str, protocol: str, shots: int, seed: int, **kw: Any) -> dict:
    """One ok record whose classes score differently (acc - 6, acc, acc + 6)."""
    # a seed-to-seed wobble that differs per backbone, so paired differences vary (no ties)
    wobble = ((seed * 7 + len(backbone) * 3 + shots) % 5) * 0.37 + 0.11 * seed * len(backbone)
    acc = round(BASE[(backbone, protocol)] + 2.0 * shots + 1.5 * seed + wobble, 4)
    rec = fake_record(
        backbone=backbone, sha=SHAS[backbone], protocol=protocol, shots=shots, seed=seed,
        acc=acc, **kw,
    )  # fmt: skip
    rec["metrics"]["per_class_accuracy"] = {c: acc + d for c, d in zip(CLASSES, (-6.0, 0.0, 6.0))}
    return rec


def board_records() -> list[dict]:
    """The full set: 36 ok records, one failed and one diverged cell (sarjepa linear K=5)."""
    recs = [
        board_record(bb, proto, k, seed)
        for (bb, proto) in BASE
        for k in (1, 5)
        for seed in (1, 2, 3)
    ]
    recs.append(
        fake_record(backbone="sarjepa", protocol="linear", shots=5, seed=4, status="failed")
    )
    diverged = fake_record(backbone="sarjepa", protocol="linear", shots=5, seed=5, status="failed")
    diverged.update(status="diverged", error="loss ended far above its start")
    diverged["metrics"] = {"accuracy": 40.0}  # scored, so --include-diverged can average it
    recs.append(diverged)
    return recs
