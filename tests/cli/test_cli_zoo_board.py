"""configs/zoo.yaml matches the registry, and scripts/zoo_board.sh runs the zoo through one grid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from sarfewshot.datasets.synthetic import generate_synthetic
from sarfewshot.models.registry import get_backbone_spec, list_backbones
from sarfewshot.results.records import iter_records
from tests.cli.conftest import script_env

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "zoo_board.sh"
VECTORS = REPO.parent / "shared" / "vectors" / "zoo"
ZOO = ("saratrx", "sarmae", "ijepa")


def _entries() -> dict[str, dict]:
    return {e["name"]: e for e in yaml.safe_load((REPO / "configs" / "zoo.yaml").read_text())[
        "backbones"
    ]}  # fmt: skip


def test_zoo_yaml_lists_every_weighted_backbone_with_its_file_and_sources():
    entries = _entries()
    for name in list_backbones():
        spec = get_backbone_spec(name)
        if not spec.needs_weights:
            assert name not in entries, f"{name} takes no weights; it has no place on the board"
            continue
        assert name in entries, f"configs/zoo.yaml lacks the registered backbone {name}"
        assert entries[name]["file"] == spec.expected_file
        assert entries[name]["sources"] == [s.describe() for s in spec.sources]
    extra = [n for n in entries if not n.startswith("torchgeo:") and n not in list_backbones()]
    assert not extra, f"configs/zoo.yaml names unregistered backbones {extra}"


def _env(tmp_path: Path, **extra: str) -> dict:
    return script_env(**extra)


def test_zoo_board_unknown_backbone_is_a_clear_error(tmp_path):
    env = _env(tmp_path, BACKBONES="saratrx nosuch", WEIGHTS_DIR=str(tmp_path))
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "['nosuch'] not in configs/zoo.yaml" in done.stderr


@pytest.mark.skipif(not VECTORS.is_dir(), reason="../shared/vectors/zoo is absent")
def test_zoo_board_runs_the_vector_checkpoints_through_one_grid(tmp_path):
    root = generate_synthetic(tmp_path / "data", 4, 2, size=32, progress_bar=False)
    weights = tmp_path / "weights"
    weights.mkdir()
    # two found under their expected names in WEIGHTS_DIR, one through a WEIGHTS override
    for name in ("saratrx", "sarmae"):
        (weights / f"{name}.pth").symlink_to(VECTORS / f"{name}_ckpt.pth")
    out = tmp_path / "board"
    env = _env(
        tmp_path,
        BACKBONES="saratrx,sarmae,ijepa,sarjepa",
        WEIGHTS_DIR=str(weights),
        WEIGHTS=f"ijepa={VECTORS / 'ijepa_ckpt.pth'}",
        ARCHS="saratrx=heads=2;sarmae=heads=2;ijepa=heads=2",  # width 64: heads not inferable
        DATA=str(root),
        DATASETS="synthetic",
        OUT=str(out),
        IMG="64",
        SEEDS="1",
        EPOCHS="1",
        RELEASE_PROTOCOLS="",
        QUICK_SHOTS="1",
        QUICK_PROTOCOLS="knn,prototype",
        DEVICE="cpu",
    )
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    skip = f"skip sarjepa: no weights at {weights / 'sarjepa.pth'}; get sarjepa.pth from: kaggle:"
    assert skip in done.stderr
    cells = {(r["backbone"]["name"], r["protocol"], r["shots"]) for r in iter_records([out])}
    assert cells == {(b, p, 1) for b in ZOO for p in ("knn", "prototype")}
    assert [p.name for p in (out / "splits").iterdir()] == ["synthetic"]
    assert [p.name for p in (out / "splits" / "synthetic").iterdir()] == ["shot_1-seed_1.json"]
    assert (out / "board.md").is_file()
