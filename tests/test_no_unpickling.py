"""No command unpickles a user's file: every path that reads a torch checkpoint refuses a pickle
payload, and the payload's code never runs.

The package reads torch files in two places, ``sarfewshot.models.checkpoint.safe_load`` (weights,
pretraining checkpoints) and ``sarfewshot.engine.trainer.load_checkpoint`` (the trainer's
checkpoints). Each test below goes through a public entry point (a CLI command, or the public
function a command calls), so the tests hold while modules move. Each payload would create a
marker file when unpickled without restriction; every test asserts that the marker is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sarfewshot.cli.main import main
from sarfewshot.errors import WeightsError

TINY_EVAL = ["--arch", "irpe_vit_micro_patch8", "--img-size", "32", "--device", "cpu"]


class Payload:
    """Unpickling this creates ``marker``: proof that code hidden in a file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def write_payload(path: Path, marker: Path, **fields) -> Path:
    """A torch file that looks like a checkpoint (``fields``) but carries a :class:`Payload`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**fields, "extra": Payload(marker)}, path)
    return path


def assert_refused(err: str, path: Path, marker: Path) -> None:
    assert str(path) in err, err
    assert "refusing" in err or "safely" in err, err
    assert not marker.exists(), "the payload ran"


def test_the_payload_does_run_when_unpickled_without_restriction(tmp_path):
    """The check of every other test can fail: an unrestricted load runs the payload."""
    marker = tmp_path / "ran"
    path = write_payload(tmp_path / "bad.pth", marker, state_dict={"w": torch.zeros(1)})
    torch.load(path, weights_only=False)
    assert marker.exists()


# --- sarfewshot.engine.trainer.load_checkpoint ------------------------------------------------


def test_trainer_load_checkpoint_refuses_a_pickle(tmp_path):
    from sarfewshot.engine.trainer import load_checkpoint

    marker = tmp_path / "ran"
    path = write_payload(tmp_path / "model.pth.tar-1", marker, state_dict={}, epoch=1)
    with pytest.raises(WeightsError) as err:
        load_checkpoint(str(path))
    assert_refused(str(err.value), path, marker)


@pytest.fixture
def mstar_tree(tmp_path) -> Path:
    from tests.fakes import make_mstar_soc_tree

    make_mstar_soc_tree(tmp_path / "data", n_train=3, n_test=1)
    return tmp_path / "data"


def _dassl_train(root: Path, out: Path, *extra: str) -> int:
    from sarfewshot.configs import config_path

    return main([
        "dassl-train", "--root", str(root), "--trainer", "MIM_linear", "--seed", "1",
        "--dataset-config-file", str(config_path("datasets", "MSTAR_SOC.yaml")),
        "--config-file", str(config_path("trainers", "MIM_linear", "vit_b16.yaml")),
        "--output-dir", str(out), *extra,
        "MODEL.BACKBONE.NAME", "random", "MODEL.BACKBONE.ARCH", "irpe_vit_micro_patch8",
        "INPUT.SIZE", "(32, 32)", "DATASET.NUM_SHOTS", "1", "OPTIM.MAX_EPOCH", "1",
    ])  # fmt: skip


def test_dassl_train_eval_only_refuses_a_pickled_model(mstar_tree, tmp_path, capsys):
    """``dassl-train --eval-only`` -> ``TrainerBase.load_model`` -> the trainer's reader."""
    marker = tmp_path / "ran"
    model_dir = tmp_path / "trained"
    path = write_payload(model_dir / "model" / "model.pth.tar-1", marker, state_dict={}, epoch=1)
    extra = ("--eval-only", "--model-dir", str(model_dir), "--load-epoch", "1")
    assert _dassl_train(mstar_tree, tmp_path / "eval", *extra) == 2
    assert_refused(capsys.readouterr().err, path, marker)


def test_dassl_train_resume_refuses_a_pickled_checkpoint(mstar_tree, tmp_path, capsys):
    """A rerun in a folder with a checkpoint -> ``TrainerBase.resume_model_if_exist``."""
    marker = tmp_path / "ran"
    out = tmp_path / "run"
    path = write_payload(out / "model" / "model.pth.tar-1", marker, state_dict={}, epoch=1)
    (out / "model" / "checkpoint").write_text("model.pth.tar-1\n")
    assert _dassl_train(mstar_tree, out) == 2
    assert_refused(capsys.readouterr().err, path, marker)


# --- sarfewshot.models.checkpoint.safe_load, through each caller -------------------------------


def _eval(root: Path, out: Path, backbone: str, weights: str) -> int:
    return main([
        "eval", "--backbone", backbone, "--weights", weights, *TINY_EVAL, "--dataset", "mstar",
        "--root", str(root), "--shots", "1", "--protocol", "prototype", "--seeds", "1",
        "--output", str(out),
    ])  # fmt: skip


def test_eval_refuses_pickled_weights(mstar_tree, tmp_path, capsys):
    """``eval --weights FILE`` -> ``build_backbone`` -> ``safe_load``."""
    marker = tmp_path / "ran"
    path = write_payload(tmp_path / "w.pth", marker, model={"w": torch.zeros(1)})
    assert _eval(mstar_tree, tmp_path / "runs", "sarjepa", str(path)) == 2
    assert_refused(capsys.readouterr().err, path, marker)


def test_dassl_train_refuses_pickled_init_weights(mstar_tree, tmp_path, capsys):
    """``dassl-train ... MODEL.INIT_WEIGHTS FILE`` -> the backbone builder -> ``safe_load``."""
    marker = tmp_path / "ran"
    path = write_payload(tmp_path / "w.pth", marker, model={"w": torch.zeros(1)})
    from sarfewshot.configs import config_path

    code = main([
        "dassl-train", "--root", str(mstar_tree), "--trainer", "MIM_linear", "--seed", "1",
        "--dataset-config-file", str(config_path("datasets", "MSTAR_SOC.yaml")),
        "--config-file", str(config_path("trainers", "MIM_linear", "vit_b16.yaml")),
        "--output-dir", str(tmp_path / "run"), "MODEL.INIT_WEIGHTS", str(path),
        "MODEL.BACKBONE.ARCH", "irpe_vit_micro_patch8", "INPUT.SIZE", "(32, 32)",
        "DATASET.NUM_SHOTS", "1", "OPTIM.MAX_EPOCH", "1",
    ])  # fmt: skip
    assert code == 2
    assert_refused(capsys.readouterr().err, path, marker)


def test_eval_refuses_pickled_hf_weights_offline(mstar_tree, tmp_path, capsys, monkeypatch):
    """``eval --weights hf://...`` -> the hub download (a local cache here) -> ``safe_load``."""
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as hf_constants

    from tests.cli.test_cli_backbones import REV, hf_cache

    marker = tmp_path / "ran"
    src = write_payload(tmp_path / "src.pth", marker, model={"w": torch.zeros(1)})
    cache = hf_cache(tmp_path, "someone/sar-weights", "w.pth", src)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    code = _eval(mstar_tree, tmp_path / "runs", "sarjepa", "hf://someone/sar-weights/w.pth")
    assert code == 2
    cached = cache / "models--someone--sar-weights" / "snapshots" / REV / "w.pth"
    assert_refused(capsys.readouterr().err, cached, marker)


def test_torchgeo_backbone_refuses_a_pickled_weights_file(tmp_path):
    """``build_backbone('torchgeo:...', weights=FILE)`` (what ``eval`` calls) -> ``safe_load``."""
    tgm = pytest.importorskip("torchgeo.models")
    if "SENTINEL1_ALL_MOCO" not in tgm.ResNet50_Weights.__members__:
        pytest.skip("this torchgeo has no ResNet50 Sentinel-1 weights")
    from sarfewshot.models import build_backbone

    marker = tmp_path / "ran"
    path = write_payload(tmp_path / "s1.pth", marker, model={"w": torch.zeros(1)})
    with pytest.raises(WeightsError) as err:
        build_backbone("torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO", weights=path, img_size=32)
    assert_refused(str(err.value), path, marker)


def _pretrain(tmp_path: Path, out: Path, *extra: str) -> int:
    from tests.pretrain.synthetic_sar import write_chips

    data = tmp_path / "chips"
    if not data.exists():
        write_chips(data, n=2, size=64)
    return main([
        "pretrain", "--config", "sarjepa_tiny", "--data", str(data), "--output", str(out),
        "--batch-size", "2", "--max-steps", "1", *extra,
    ])  # fmt: skip


def _pretrain_payload(path: Path, marker: Path) -> Path:
    resume = {"step": 1, "epoch": 0, "micro": 0, "world_size": 1, "batch_size": 2, "accum_iter": 1}
    return write_payload(path, marker, model={}, optimizer={}, method="sarjepa", resume=resume)


def test_pretrain_resume_refuses_a_pickled_checkpoint(tmp_path, capsys):
    """``pretrain --resume-from FILE`` -> the resume reader -> ``safe_load``."""
    marker = tmp_path / "ran"
    path = _pretrain_payload(tmp_path / "old" / "checkpoint-last.pth", marker)
    assert _pretrain(tmp_path, tmp_path / "run", "--resume-from", str(path)) == 2
    assert_refused(capsys.readouterr().err, path, marker)


def test_pretrain_auto_resume_refuses_a_pickled_checkpoint(tmp_path, capsys):
    """``pretrain --resume`` (auto: the output's checkpoint-last.pth) -> ``safe_load``."""
    marker = tmp_path / "ran"
    out = tmp_path / "run"
    path = _pretrain_payload(out / "checkpoint-last.pth", marker)
    assert _pretrain(tmp_path, out, "--resume") == 2
    assert_refused(capsys.readouterr().err, path, marker)


def test_pretrain_guard_reads_an_existing_checkpoint_without_unpickling(tmp_path, capsys):
    """A fresh ``pretrain`` over an old run names the old checkpoint's step; a pickled one is
    reported unreadable, not executed."""
    marker = tmp_path / "ran"
    out = tmp_path / "run"
    path = _pretrain_payload(out / "checkpoint-last.pth", marker)
    assert _pretrain(tmp_path, out) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "unknown (unreadable)" in err
    assert not marker.exists(), "the payload ran"
