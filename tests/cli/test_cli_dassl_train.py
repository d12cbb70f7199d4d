"""`sarfewshot dassl-train`: the release's configs end to end, Dassl-style logs, seeds, reruns.

The release-config runs use the shared MSTAR chips (skipped without ../shared) with a tiny random
backbone at 32 px; the command-line mechanics run on a fake MSTAR tree in tmp_path.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from sarfewshot.cli.dassl_train import bundled_config
from sarfewshot.cli.main import build_parser, main
from sarfewshot.configs import config_path
from sarfewshot.data.registry import get_dataset
from sarfewshot.engine.config import setup_cfg
from sarfewshot.engine.registry import get_trainer
from sarfewshot.errors import ConfigError
from sarfewshot.results.dassl_logs import parse_dassl_log, records_from_dassl_runs
from tests.fakes import make_mstar_soc_tree

TINY = [
    "MODEL.BACKBONE.NAME",
    "random",
    "MODEL.BACKBONE.ARCH",
    "irpe_vit_micro_patch8",
    "INPUT.SIZE",
    "(32, 32)",
    "DATASET.NUM_SHOTS",
    "1",
    "OPTIM.MAX_EPOCH",
    "2",
]
RELEASE = {
    "DATALOADER.TRAIN_X.BATCH_SIZE": 50,
    "DATALOADER.TEST.BATCH_SIZE": 50,
    "DATALOADER.NUM_WORKERS": 0,
    "INPUT.INTERPOLATION": "bicubic",
    "OPTIM.NAME": "adamw",
    "OPTIM.LR": 0.001,
    "OPTIM.WEIGHT_DECAY": 0.0005,
    "OPTIM.ADAM_BETA1": 0.9,
    "OPTIM.ADAM_BETA2": 0.999,
    "OPTIM.LR_SCHEDULER": "cosine",
    "OPTIM.WARMUP_EPOCH": 2,
    "OPTIM.WARMUP_TYPE": "constant",
    "OPTIM.WARMUP_CONS_LR": 1e-05,
    "TRAIN.PRINT_FREQ": 5,
}
BLOCK = re.compile(
    r"Finish training\n(?:.*\n)*?=> result\n\* total: [\d,]+\n\* correct: [\d,]+\n"
    r"\* accuracy: \d+\.\d%\n\* error: \d+\.\d%\n\* macro_f1: \d+\.\d%\n"
)


def dassl_train(root, out, trainer="MIM_finetune", seed=None, extra=(), opts=TINY) -> int:
    """Run the command with the release's files (the shell scripts' argument order)."""
    argv = [
        "dassl-train",
        "--root",
        str(root),
        "--trainer",
        trainer,
        "--dataset-config-file",
        str(config_path("datasets", "MSTAR_SOC.yaml")),
        "--config-file",
        str(config_path("trainers", trainer, "vit_b16.yaml")),
        "--output-dir",
        str(out),
        *([] if seed is None else ["--seed", str(seed)]),
        *extra,
        *opts,
    ]
    return main(argv)


def run_dir(base: Path, trainer: str, seed: int) -> Path:
    """CoOp's folder layout: <dataset>/<trainer>/<cfg>_<K>shots/seed<S>."""
    return base / "MSTAR_SOC" / trainer / "vit_b16_1shots" / f"seed{seed}"


def result_block(text: str) -> str:
    return text[text.index("=> result") :].split("Elapsed")[0]


def training_lines(text: str) -> list[str]:
    """Epoch lines without their wall-clock times."""
    lines = [ln for ln in text.splitlines() if ln.startswith("epoch [")]
    return [re.sub(r" time \S+", "", ln) for ln in lines]


# ----------------------------------------------------------------------------- real MSTAR


@pytest.fixture(scope="module")
def mstar_runs(tmp_path_factory, mstar_soc_root) -> Path:
    """Both release trainers through dassl-train on the shared MSTAR chips (1-shot, 2 epochs)."""
    base = tmp_path_factory.mktemp("dassl_runs")
    for trainer, seed in (("MIM_finetune", 0), ("MIM_linear", 1)):
        assert dassl_train(mstar_soc_root, run_dir(base, trainer, seed), trainer, seed) == 0
    return base


@pytest.mark.parametrize("trainer,seed", [("MIM_finetune", 0), ("MIM_linear", 1)])
def test_release_configs_run_on_mstar(mstar_runs, trainer, seed):
    out = run_dir(mstar_runs, trainer, seed)
    text = (out / "log.txt").read_text()
    assert BLOCK.search(text), text[-800:]
    parsed = parse_dassl_log(out / "log.txt")
    assert parsed["total"] == 2425 and not parsed["eval_only"]
    assert parsed["accuracy"] == round(100 * parsed["correct"] / 2425, 1)
    cfg = parsed["config"]
    assert cfg["DATASET.NAME"] == "MSTAR_SOC" and cfg["TRAINER.NAME"] == trainer
    assert (cfg["DATASET.NUM_SHOTS"], cfg["SEED"], cfg["MODEL.BACKBONE.NAME"]) == (
        1,
        seed,
        "random",
    )
    assert cfg["OPTIM.MAX_EPOCH"] == 2 and cfg["INPUT.SIZE"] == "(32, 32)"
    for key, value in RELEASE.items():
        assert cfg[key] == value, key
    # Two constant warm-up epochs at 1e-5 (the release's schedule), then a checkpoint.
    assert [ln.split(" lr ")[1].split()[0] for ln in training_lines(text)][-1] == "1.0000e-05"
    ckpt = torch.load(out / "model" / "model.pth.tar-2", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["val_result"] is None


def test_leaderboard_reads_dassl_train_logs(mstar_runs, capsys):
    records = records_from_dassl_runs([mstar_runs])
    cells = {(r["protocol"], r["dataset"]["name"], r["shots"], r["seed"]) for r in records}
    # the release's names map to the registry's, so these rows merge with `eval` rows
    assert cells == {("finetune", "mstar_soc", 1, 0), ("linear", "mstar_soc", 1, 1)}
    assert {r["backbone"]["name"] for r in records} == {"random"}
    capsys.readouterr()
    assert main(["leaderboard", str(mstar_runs)]) == 0
    table = capsys.readouterr().out
    for rec in records:
        assert rec["protocol"] in table
        assert f"{rec['metrics']['accuracy']:.2f}" in table
    assert "mstar_soc K=1" in table


# ----------------------------------------------------------------------------- mechanics


@pytest.fixture
def fake_root(tmp_path) -> Path:
    make_mstar_soc_tree(tmp_path / "data", n_train=5, n_test=2)
    return tmp_path / "data"


def test_finished_folder_is_skipped_and_force_trains_again(fake_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert dassl_train(fake_root, out, seed=3) == 0
    first = (out / "log.txt").read_text()
    capsys.readouterr()
    assert dassl_train(fake_root, out, seed=3) == 0
    assert "already holds a finished run" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("log.txt*")) == ["log.txt"]
    assert dassl_train(fake_root, out, seed=3, extra=["--force"]) == 0
    logs = sorted(out.glob("log.txt-*"))
    assert len(logs) == 1 and (out / "log.txt").read_text() == first
    forced = logs[0].read_text()
    assert "Resume" not in forced and training_lines(forced) == training_lines(first)
    assert result_block(forced) == result_block(first)


def test_seed_zero_is_a_real_seed(fake_root, tmp_path):
    logs = []
    for name in ("a", "b"):
        torch.manual_seed(999)
        assert dassl_train(fake_root, tmp_path / name, seed=0) == 0
        assert torch.initial_seed() == 0  # Dassl's `if args.seed:` would not have seeded
        logs.append((tmp_path / name / "log.txt").read_text())
    assert "\nSEED: 0\n" in logs[0]  # and would have left SEED at -1
    assert training_lines(logs[0]) == training_lines(logs[1])
    assert result_block(logs[0]) == result_block(logs[1])


def test_eval_only_loads_our_checkpoint(fake_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert dassl_train(fake_root, out, "MIM_linear", seed=2) == 0
    evaluated = tmp_path / "eval"
    extra = ["--eval-only", "--model-dir", str(out), "--load-epoch", "2"]
    assert dassl_train(fake_root, evaluated, "MIM_linear", seed=2, extra=extra) == 0
    text = (evaluated / "log.txt").read_text()
    assert "model.pth.tar-2 to model (epoch=2, val_result=None)" in text
    assert "Finish training" not in text
    assert result_block(text) == result_block((out / "log.txt").read_text())
    parsed = parse_dassl_log(evaluated / "log.txt")
    assert parsed["eval_only"] and parsed["config"]["SEED"] == 2


@pytest.mark.parametrize(
    "trainer,opts", [("lora", []), ("partial", ["TRAINER.PARTIAL.BLOCKS", "1"])]
)
def test_adaptation_protocols_train_and_reload(fake_root, tmp_path, trainer, opts):
    # lora and partial take the fine-tune's file (their preset); the checkpoint holds the
    # adapters (lora) and reloads into a freshly adapted model for --eval-only
    preset = str(config_path(*get_trainer(trainer).preset))
    dataset = str(config_path("datasets", "MSTAR_SOC.yaml"))
    runs = {}
    for name, extra in (
        ("run", []),
        ("eval", ["--eval-only", "--model-dir", str(tmp_path / "run")]),
    ):
        argv = ["dassl-train", "--root", str(fake_root), "--trainer", trainer, "--seed", "1"]
        argv += ["--dataset-config-file", dataset, "--config-file", preset]
        argv += ["--output-dir", str(tmp_path / name), *extra, *TINY, *opts]
        assert main(argv) == 0
        runs[name] = (tmp_path / name / "log.txt").read_text()
    assert BLOCK.search(runs["run"])
    assert result_block(runs["eval"]) == result_block(runs["run"])
    ckpt = torch.load(tmp_path / "run" / "model" / "model.pth.tar-2", weights_only=True)
    lora_keys = [k for k in ckpt["state_dict"] if ".lora_B." in k]
    assert bool(lora_keys) == (trainer == "lora")


def test_eval_only_errors_name_the_flag_or_file(fake_root, tmp_path, capsys):
    assert dassl_train(fake_root, tmp_path / "e", extra=["--eval-only"]) == 2
    assert "--model-dir" in capsys.readouterr().err
    extra = ["--eval-only", "--model-dir", str(tmp_path / "nothing"), "--load-epoch", "7"]
    assert dassl_train(fake_root, tmp_path / "e", seed=1, extra=extra) == 2
    assert "model.pth.tar-7" in capsys.readouterr().err


def test_no_train_builds_and_stops(fake_root, tmp_path):
    out = tmp_path / "run"
    assert dassl_train(fake_root, out, seed=1, extra=["--no-train"]) == 0
    text = (out / "log.txt").read_text()
    assert "** Config **" in text and "Finish training" not in text
    assert not (out / "model").exists()


def test_flags_map_to_dassl_keys(tmp_path):
    yaml_file = tmp_path / "method.yaml"
    yaml_file.write_text("SEED: 5\nMODEL:\n  BACKBONE:\n    NAME: sarjepa\n")
    base = ["dassl-train", "--config-file", str(yaml_file), "--trainer", "MIM_linear"]
    args = build_parser().parse_args(base)
    assert setup_cfg(args=args).SEED == 5  # no --seed: the YAML's seed stays
    argv = base + ["--seed", "0", "--backbone", "random", "--weights", "w.pth", "--arch", "a"]
    args = build_parser().parse_args(argv + ["--", "DATASET.NUM_SHOTS", "4"])
    args.opts = args.opts[1:]
    cfg = setup_cfg(args=args)
    assert (cfg.SEED, cfg.MODEL.BACKBONE.NAME, cfg.MODEL.INIT_WEIGHTS) == (0, "random", "w.pth")
    assert (cfg.MODEL.BACKBONE.ARCH, cfg.DATASET.NUM_SHOTS, cfg.TRAINER.NAME) == (
        "a",
        4,
        "MIM_linear",
    )


def test_release_files_hold_the_release_values():
    for name, ours in (
        ("MSTAR_SOC", "mstar_soc"),
        ("New_FUSAR", "fusar_ship"),
        ("SAR_ACD", "sar_acd"),
    ):
        data = yaml.safe_load(config_path("datasets", f"{name}.yaml").read_text())
        assert data == {"DATASET": {"NAME": name}}
        assert get_dataset(name) is get_dataset(ours)
    for trainer, protocol in (("MIM_finetune", "finetune"), ("MIM_linear", "linear")):
        assert get_trainer(trainer) is get_trainer(protocol)
        cfg = setup_cfg(config_file=config_path("trainers", trainer, "vit_b16.yaml"))
        for key, value in {**RELEASE, "OPTIM.MAX_EPOCH": 40}.items():
            node = cfg
            for part in key.split("."):
                node = node[part]
            assert node == value, key
        assert tuple(cfg.INPUT.SIZE) == (224, 224) and tuple(cfg.INPUT.TRANSFORMS) == ()
        assert cfg.MODEL.BACKBONE.NAME == "sarjepa" and cfg.INPUT.CHANNELS == 1


def test_trainer_must_be_a_trainerx(tmp_path, capsys):
    base = ["dassl-train", "--output-dir", str(tmp_path / "o"), "--trainer"]
    assert main(base + ["knn"]) == 2
    assert "feature protocol" in capsys.readouterr().err
    assert main(base + ["MIM_nothing"]) == 2
    assert "MIM_nothing" in capsys.readouterr().err and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- daily loop


def test_release_configs_resolve_from_any_directory(fake_root, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    names = [
        ("configs/datasets/MSTAR_SOC.yaml", "configs/trainers/MIM_linear/vit_b16.yaml"),
        ("MSTAR_SOC", "MIM_linear/vit_b16"),
    ]
    for n, (dataset_file, method_file) in enumerate(names):
        out = tmp_path / f"run{n}"
        argv = ["dassl-train", "--root", str(fake_root), "--trainer", "MIM_linear",
                "--dataset-config-file", dataset_file, "--config-file", method_file,
                "--output-dir", str(out), "--seed", "1", "--no-train", *TINY]  # fmt: skip
        assert main(argv) == 0
        text = (out / "log.txt").read_text()
        assert "\n  NAME: MSTAR_SOC\n" in text and "\n  NAME: adamw\n" in text
    # a file of the user's own at that path wins over the bundled one
    mine = elsewhere / "configs" / "datasets" / "MSTAR_SOC.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("DATASET:\n  NAME: SAR_ACD\n")
    path = bundled_config("configs/datasets/MSTAR_SOC.yaml", "datasets", "--dataset-config-file")
    assert setup_cfg(dataset_config_file=path).DATASET.NAME == "SAR_ACD"
    with pytest.raises(ConfigError, match="--config-file MIM_nothing: .*MIM_linear/vit_b16"):
        bundled_config("MIM_nothing", "trainers", "--config-file")


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        (["MODEL.INIT_WEIGHTS", "missing.pth"], "MODEL.INIT_WEIGHTS"),
        (["--weights", "missing.pth"], "--weights"),
    ],
)
def test_failed_run_logs_its_error_naming_the_option(fake_root, tmp_path, capsys, setting, named):
    out = tmp_path / "run"
    extra = setting if named == "--weights" else []
    # a backbone that takes weights (it fails before anything is built)
    opts = [*TINY, "MODEL.BACKBONE.NAME", "sarjepa", *(setting if named != "--weights" else [])]
    assert dassl_train(fake_root, out, "MIM_linear", seed=1, extra=extra, opts=opts) == 2
    err = capsys.readouterr().err
    assert f"error: {named} missing.pth: file not found" in err
    if named != "--weights":
        assert "--weights" not in err
    assert (out / "log.txt").read_text().splitlines()[-1] == err.strip()
    # `leaderboard` names the unfinished run folder next to a finished one
    assert dassl_train(fake_root, tmp_path / "done", "MIM_linear", seed=1) == 0
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 unfinished Dassl run folder(s)" in err and str(out) in err


def test_no_progress_bar_between_iteration_lines(fake_root, tmp_path, capsys, monkeypatch):
    import sarfewshot.engine.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "progress_enabled", lambda: True)  # as on a terminal
    assert dassl_train(fake_root, tmp_path / "run", "MIM_linear", seed=1) == 0
    captured = capsys.readouterr()
    assert "batch [" in captured.out
    assert "it/s" not in captured.err and "%|" not in captured.err


def test_dassl_bridge_names_init_weights_not_a_flag(tmp_path):
    from sarfewshot.errors import WeightsError
    from sarfewshot.integrations.dassl import check_init_weights

    cfg = setup_cfg(opts=["MODEL.INIT_WEIGHTS", str(tmp_path / "missing.pth")])
    with pytest.raises(WeightsError, match=r"^MODEL.INIT_WEIGHTS .*missing.pth: file not found"):
        check_init_weights(cfg)
    (tmp_path / "there.pth").write_bytes(b"")
    check_init_weights(setup_cfg(opts=["MODEL.INIT_WEIGHTS", str(tmp_path / "there.pth")]))
