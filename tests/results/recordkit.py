"""Builders of valid schema-1 records for the results tests (no grid, no torch)."""

from __future__ import annotations

from typing import Any, Sequence

from sarfewshot.results.records import make_record

SHA_A = "a" * 64
SHA_B = "b" * 64
CLASSES = ("2S1", "BMP2", "T72")
VERSIONS = {"sarfewshot": "0.1.0", "torch": "x", "timm": "x", "numpy": "x", "python": "3"}


def fake_record(
    *,
    backbone: str = "sarjepa",
    sha: str | None = SHA_A,
    dataset: str = "mstar",
    protocol: str = "linear",
    shots: int = 5,
    seed: int = 1,
    acc: float = 70.0,
    f1: float | None = None,
    config: dict | None = None,
    created: str = "2025-01-01T00:00:00+00:00",
    status: str = "ok",
    split_sha: str | None = None,
    cmat: Sequence[Sequence[int]] | None = None,
    host: str = "node1",
) -> dict[str, Any]:
    """A valid record; the split hash defaults to one derived from (dataset, shots, seed)."""
    metrics: dict[str, Any] = {}
    if status == "ok":
        metrics = {
            "accuracy": acc,
            "error": 100.0 - acc,
            "macro_f1": acc - 1.0 if f1 is None else f1,
            "per_class_accuracy": {c: acc for c in CLASSES},
            "confusion_matrix": [
                list(r) for r in (cmat if cmat is not None else [[5, 1, 0], [0, 6, 0], [1, 0, 5]])
            ],
        }
    return make_record(
        backbone={
            "name": backbone,
            "arch": "vit_tiny",
            "weights": "/w/ckpt.pth" if sha else None,
            "weights_sha256": sha,
            "load_report": {"missing": [], "unexpected": []},
        },
        dataset={
            "name": dataset,
            "root": "/data",
            "listing_sha256": "l" * 64,
            "num_classes": 3,
            "classnames": list(CLASSES),
            "num_test": 18,
        },
        split={
            "path": f"splits/{dataset}_k{shots}_s{seed}.json",
            "sha256": split_sha or f"split-{dataset}-{shots}-{seed}",
        },
        protocol=protocol,
        shots=shots,
        seed=seed,
        config=config if config is not None else {"OPTIM": {"LR": 0.001}, "SEED": seed},
        metrics=metrics,
        timings={"total_s": 1.5},
        device="cpu",
        status=status,
        error="non-finite loss at epoch 3" if status == "failed" else None,
        versions=VERSIONS,
        created=created,
        host=host,
    )


# Dassl's log.txt, as its train.py prints it (arguments, yacs config dump, epochs, results)
HEAD = """\
Setting fixed seed: {seed}
***************
** Arguments **
***************
backbone: {blank}
config_file: configs/trainers/MIM_linear/vit_b16.yaml
dataset_config_file: configs/datasets/MSTAR_SOC.yaml
eval_only: {eval_only}
head: {blank}
load_epoch: None
model_dir: {blank}
no_train: False
opts: ['DATASET.NUM_SHOTS', '10']
output_dir: output/MSTAR_SOC/MIM_linear/vit_b16_10shots/seed{seed}
resume: {blank}
root: /data
seed: {seed}
source_domains: None
target_domains: None
trainer: MIM_linear
transforms: None
************
** Config **
************
DATALOADER:
  NUM_WORKERS: 8
  TEST:
    BATCH_SIZE: 100
    SAMPLER: SequentialSampler
  TRAIN_X:
    BATCH_SIZE: 50
    SAMPLER: RandomSampler
DATASET:
  NAME: MSTAR_SOC
  NUM_SHOTS: 10
  ROOT: /data
  SUBSAMPLE_CLASSES: all
INPUT:
  SIZE: (224, 224)
  TRANSFORMS: ()
MODEL:
  BACKBONE:
    NAME: {backbone}
    PRETRAINED: True
  INIT_WEIGHTS: {blank}
OPTIM:
  LR: 0.001
  MAX_EPOCH: 2
  NAME: adamw
OUTPUT_DIR: output/MSTAR_SOC/MIM_linear/vit_b16_10shots/seed{seed}
RESUME: {blank}
SEED: {seed}
TRAINER:
  NAME: MIM_linear
Collecting env info ...
** System info **
PyTorch version: 2.14.1
Loading trainer: MIM_linear
Loading dataset: MSTAR_SOC
"""

EPOCH = (
    "epoch [{i}/2] batch [1/1] time 0.512 (0.512) data 0.101 (0.101) loss 2.3026 (2.3026) "
    "acc 10.0000 (10.0000) lr 1.0000e-05 eta 0:00:01\n"
)
TRAIN = (
    EPOCH.format(i=1)
    + """\
Evaluate on the *val* set
=> result
* total: 40
* correct: 4
* accuracy: 10.0%
* error: 90.0%
* macro_f1: 2.5%
"""
    + EPOCH.format(i=2)
)

TEST = """\
Evaluate on the *test* set
=> result
* total: 2,425
* correct: {correct:,}
* accuracy: {acc:.1f}%
* error: {err:.1f}%
* macro_f1: {f1:.1f}%
=> per-class result
* class: 0 (2S1)\ttotal: 274\tcorrect: 200\tacc: 73.0%
* class: 1 (BMP2)\ttotal: 195\tcorrect: 150\tacc: 76.9%
* average: 75.0%
Elapsed: 0:00:03
"""


def dassl_log(
    seed=1, acc=73.3, backbone="sarjepa", finished=True, eval_only=False, config=True
) -> str:
    """A Dassl log.txt text; ``finished=False`` stops mid-training, ``config=False`` drops the
    config dump (CoOp logs that only have folder names to go by)."""
    head = HEAD.format(seed=seed, eval_only=eval_only, backbone=backbone, blank="")
    if not config:
        head = head[: head.index("************\n** Config")]
    body = "" if eval_only else TRAIN
    if finished and not eval_only:
        body += "Checkpoint saved to output/.../model.pth.tar-2\nFinish training\n"
        body += "Deploy the last-epoch model\n"
    if finished:
        correct = round(2425 * acc / 100)
        body += TEST.format(correct=correct, acc=acc, err=100 - acc, f1=acc - 0.4)
    return head + body
