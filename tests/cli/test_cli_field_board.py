"""configs/boards/sar_fm_2025.yaml holds the study's layout; scripts/field_board.sh runs it."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import yaml

from sarfewshot.datasets.atrnet_star import SETTINGS
from sarfewshot.engine.registry import get_trainer
from sarfewshot.errors import UnknownNameError
from sarfewshot.models.registry import get_backbone_spec
from sarfewshot.results.records import iter_records
from tests import fakes
from tests.cli.conftest import script_env

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "field_board.sh"
BOARD = REPO / "configs" / "boards" / "sar_fm_2025.yaml"
NATURAL = (
    "dinov2_vits14",
    "dinov2_vitb14",
    "dinov3_vits16",
    "dinov3_vitb16",
    "dinov3_vitl16_sat",
    "pe_core_b16",
)


def _board() -> dict:
    return yaml.safe_load(BOARD.read_text())


def _known(lookup, name: str) -> bool:
    try:
        lookup(name)
    except UnknownNameError:
        return False
    return True


def _env(tmp_path: Path, **extra: str) -> dict:
    # an empty Hugging Face cache: no hub file counts as present
    return script_env(HF_HUB_CACHE=str(tmp_path / "hf-cache"), HF_HUB_OFFLINE="1", **extra)


def test_board_yaml_is_the_studys_layout():
    board = _board()
    names = [b["name"] for b in board["backbones"]]
    assert set(names) >= {"saratrx", "sarjepa", *NATURAL}
    for entry in board["backbones"]:
        assert bool(entry.get("file")) != bool(entry.get("hub")), entry["name"]
        assert entry["sources"] and entry["what"]
        if entry.get("hub"):
            assert entry["hub"].startswith("hf://timm/") and entry["hub"].endswith(".safetensors")
        if _known(get_backbone_spec, entry["name"]) and entry.get("file"):
            assert entry["file"] == get_backbone_spec(entry["name"]).expected_file
    protocols = [r["protocol"] for r in board["recipes"]]
    assert protocols == ["knn", "linear", "lora", "finetune"]
    assert board["settings"][0] == "soc40"
    assert set(board["settings"]) <= set(SETTINGS)
    assert {"eoc_scene", "eoc_depression", "eoc_azimuth", "eoc_band", "eoc_polarization"} <= set(
        board["settings"]
    )
    assert board["conditions"] == "all" and board["shots"] == [1, 5, 10, "all"]


def test_absent_weights_are_skipped_with_where_to_get_them(tmp_path):
    env = _env(tmp_path, WEIGHTS_DIR=str(tmp_path / "none"), DATA=str(tmp_path))
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stdout[-2000:]
    assert "error: no backbone of configs/boards/sar_fm_2025.yaml can run" in done.stderr
    saratrx = f"skip saratrx: no weights at {tmp_path / 'none' / 'saratrx.pth'}; get saratrx.pth"
    assert (
        saratrx in done.stderr and "https://huggingface.co/waterdisappear/SARATR-X" in done.stderr
    )
    for name in NATURAL:  # absent from the (empty) hub cache, or not registered yet
        if _known(get_backbone_spec, name):
            assert f"skip {name}: hf://timm/" in done.stderr
            assert "is not in the Hugging Face cache" in done.stderr
        else:
            assert f"skip {name}: backbone {name!r} is not registered" in done.stderr
    if not _known(get_trainer, "lora"):
        assert "skip recipe LoRA: protocol 'lora' is not registered" in done.stderr


def test_cpu_scale_runs_the_study_end_to_end(tmp_path):
    data = tmp_path / "atrnet"
    fakes.make_atrnet_star_tree(data, folders=("SOC_40classes", "EOC_depression"), n_train=5)
    out = tmp_path / "board"
    env = _env(tmp_path, DATA=str(data), OUT=str(out), SETTINGS="soc40,eoc_depression")
    env["DEVICE"] = "cpu"
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-scale"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "stand-in random@irpe_vit_micro_patch8 for saratrx, sarjepa" in done.stderr
    assert "these numbers are a pipeline check, not results" in done.stdout
    protocols = [p for p in ("knn", "linear", "lora", "finetune") if _known(get_trainer, p)]
    records = list(iter_records([out]))
    # one record per (protocol, K in {1, all}, condition): soc40 has id, eoc_depression five
    assert len(records) == len(protocols) * 2 * (1 + 5)
    assert all(r["status"] == "ok" for r in records)
    assert {r["key"]["shots"] for r in records} == {1, -1}
    with open(out / "robustness.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["setting"], r["condition"]) for r in rows} == {
        ("atrnet_star_soc40", "id"),
        *(
            ("atrnet_star_eoc_depression", c)
            for c in ("id", "depression", "depression_30", "depression_45", "depression_60")
        ),
    }
    assert all(r["drop"] != "" for r in rows if r["condition"] != "id")
    assert (out / "board.csv").is_file() and (out / "board.md").is_file()


def test_a_hub_backbones_file_in_the_weights_folder_is_used(tmp_path):
    """`<name>.safetensors` in $WEIGHTS_DIR wins over the hub, as `eval` reads it by default:
    the board must not skip the backbone because the Hugging Face cache is empty."""
    name = "dinov2_vits14"
    folder = tmp_path / "weights"
    folder.mkdir()
    local = folder / get_backbone_spec(name).expected_file
    local.write_bytes(b"not read: the data root is absent")
    env = _env(tmp_path, WEIGHTS_DIR=str(folder), DATA=str(tmp_path / "no_data"))
    env.update(BACKBONES=name, SETTINGS="soc40", PROTOCOLS="knn", SHOTS="1", SEEDS="1")
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert f"skip {name}" not in done.stderr, done.stderr[-2000:]
    assert f"--backbone {name} " in done.stdout and f"--weights {local} " in done.stdout


def test_lora_is_skipped_with_a_line_when_peft_is_absent(tmp_path):
    """Without peft every `eval` would stop at its first lora cell, so the finetune recipe of
    the board would never run: the recipe is skipped up front, naming the extra."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "peft.py").write_text("raise ImportError('peft hidden by the test')\n")
    env = _env(tmp_path, WEIGHTS_DIR=str(tmp_path / "none"), DATA=str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hide), env.get("PYTHONPATH")]))
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert "skip recipe LoRA: LoRA adapters need the peft package: pip install " in done.stderr
    assert "skip recipe full fine-tune" not in done.stderr
