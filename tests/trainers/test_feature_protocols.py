"""knn, prototype and logreg on synthetic feature clusters (no backbone, no images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sarfewshot.engine.config import get_cfg_default
from sarfewshot.engine.protocol import CellContext, CellData
from sarfewshot.engine.registry import get_trainer
from sarfewshot.trainers.knn import knn_predict
from sarfewshot.trainers.logreg import stratified_holdout
from sarfewshot.trainers.prototype import prototype_predict


def _cfg(name: str):
    from sarfewshot.engine import config as C

    cfg = get_cfg_default()
    C.extend_cfg(cfg)
    cfg.TRAINER.NAME = name
    return cfg


def _clusters(
    seed: int,
    classes: int = 4,
    shots: int = 5,
    test: int = 30,
    dim: int = 16,
    spread: float = 0.6,
    val: int = 0,
) -> CellData:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(classes), n)
        x = centres[y] + spread * rng.normal(size=(len(y), dim))
        return x.astype(np.float32), y.astype(np.int64)

    tx, ty = draw(shots)
    qx, qy = draw(test)
    vx, vy = draw(val) if val else (None, None)
    return CellData(
        classnames=[f"c{i}" for i in range(classes)],
        shots=shots,
        seed=seed,
        train_labels=ty,
        test_labels=qy,
        val_labels=vy,
        train_features=tx,
        test_features=qx,
        val_features=vx,
        dataset="toy",
    )


@pytest.mark.parametrize("name", ["knn", "prototype", "logreg"])
def test_protocol_separates_clusters_and_is_deterministic(name):
    cls = get_trainer(name)
    data = _clusters(0, val=3)
    first = cls.run_cell(_cfg(name), data, CellContext())
    second = cls.run_cell(_cfg(name), _clusters(0, val=3), CellContext())
    assert first.metrics["accuracy"] > 95.0
    assert first.metrics == second.metrics
    assert len(first.metrics["confusion_matrix"]) == 4


def test_protocols_are_not_trivially_perfect_on_noise():
    # Pure noise: every protocol must land near chance, so the tests above can fail.
    for name in ("knn", "prototype", "logreg"):
        data = _clusters(1, spread=50.0, test=100)
        acc = get_trainer(name).run_cell(_cfg(name), data, CellContext()).metrics["accuracy"]
        assert acc < 60.0, name


def test_knn_several_k_in_one_pass_match_single_k_calls():
    g = torch.Generator().manual_seed(0)
    train, query = torch.randn(20, 8, generator=g), torch.randn(13, 8, generator=g)
    labels = torch.arange(20) % 4
    together = knn_predict(train, labels, query, [1, 3, 7], 4, chunk=5)
    for k in (1, 3, 7):
        assert torch.equal(together[k], knn_predict(train, labels, query, [k], 4)[k])
    # k = 1 is the label of the most cosine-similar support vector
    sims = (
        torch.nn.functional.normalize(query, dim=1) @ torch.nn.functional.normalize(train, dim=1).T
    )
    assert torch.equal(together[1], labels[sims.argmax(dim=1)])


def test_knn_records_every_k_and_caps_by_support_size():
    cfg = _cfg("knn")
    cfg.TRAINER.KNN.KS = (1, 5, 50)
    cfg.TRAINER.KNN.K = 40
    data = _clusters(2, classes=3, shots=2)  # 6 support images
    metrics = get_trainer("knn").run_cell(cfg, data, CellContext()).metrics
    assert set(metrics["knn"]) == {"k=1", "k=5", "k=6"}
    assert metrics["knn_k"] == 6
    assert metrics["accuracy"] == metrics["knn"]["k=6"]


def test_prototype_is_nearest_centred_normalised_mean():
    train = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[5.0, 1.0], [1.0, 5.0]])
    assert prototype_predict(train, labels, query, 2).tolist() == [0, 1]
    # an absent class is never predicted
    assert prototype_predict(train[:2], labels[:2], query, 2).tolist() == [0, 0]


def test_logreg_records_chosen_c_and_source():
    cls = get_trainer("logreg")
    pool = cls.run_cell(_cfg("logreg"), _clusters(3, val=4), CellContext()).metrics
    assert pool["logreg_val_source"] == "pool"
    assert pool["chosen_C"] in _cfg("logreg").TRAINER.LOGREG.C_GRID
    held = cls.run_cell(_cfg("logreg"), _clusters(3), CellContext()).metrics
    assert held["logreg_val_source"] == "holdout"
    one = cls.run_cell(_cfg("logreg"), _clusters(3, shots=1), CellContext()).metrics
    assert one["logreg_val_source"] == "default"
    assert one["chosen_C"] == 1.0


def test_logreg_never_looks_at_test_labels():
    data = _clusters(4, val=3)
    base = get_trainer("logreg").run_cell(_cfg("logreg"), data, CellContext()).metrics
    data.test_labels = data.test_labels[::-1].copy()  # scrambled test labels: same C chosen
    again = get_trainer("logreg").run_cell(_cfg("logreg"), data, CellContext()).metrics
    assert again["chosen_C"] == base["chosen_C"]


def test_stratified_holdout_keeps_a_fitting_image_per_class():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    fit, hold = stratified_holdout(labels, 0.5, np.random.default_rng(0))
    assert sorted(np.concatenate([fit, hold]).tolist()) == list(range(9))
    for c in (0, 1, 2):
        assert (labels[fit] == c).sum() >= 1 and (labels[hold] == c).sum() >= 1
