"""`sarfewshot backbones`: the listing and whether weights are found."""

from __future__ import annotations

from pathlib import Path

import pytest

from sarfewshot.cli.main import main
from sarfewshot.utils.io import sha256_file


def test_backbones_lists_names_and_found_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SARFEWSHOT_WEIGHTS", raising=False)
    (tmp_path / "sarjepa.pth").write_bytes(b"")  # presence is all the listing checks
    assert main(["backbones", "--weights-dir", str(tmp_path), "--archs"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for name in ("sarjepa", "mae", "ijepa", "random", "lomar_sar", "pgga", "timm:<model_name>"):
        assert name in rows, name
    assert rows["sarjepa"][-1] == "found" and rows["sarjepa"][2] == "irpe_vit_base_patch16"
    assert rows["mae"][-1] == "missing" and rows["mae"][4] == "mae.pth"
    assert rows["random"][-1] == "needed"  # "not needed"
    assert rows["ijepa"][3] == "avg"
    assert str(tmp_path) in out and "github.com/waterdisappear/SAR-JEPA" in out
    assert "kaggle.com/models/liweijie19/sar-jepa" in out and "release page" not in out
    assert "irpe_vit_micro_patch8" in out


def test_backbones_honours_env(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SARFEWSHOT_WEIGHTS", str(tmp_path))
    (tmp_path / "fgmae.pth").write_bytes(b"")
    assert main(["backbones"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line}
    assert rows["fgmae"][-1] == "found" and rows["sarjepa"][-1] == "missing"


def test_backbones_lists_the_zoo_and_its_sources(capsys, monkeypatch):
    monkeypatch.delenv("SARFEWSHOT_WEIGHTS", raising=False)
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["saratrx"][1] == "hivit" and rows["saratrx"][2] == "hivit_base_patch16"
    assert rows["sarmae"][4] == "sarmae.pth"
    assert "Known public sources" in out
    assert "- saratrx: hf: https://huggingface.co/waterdisappear/SARATR-X" in out
    assert "hf://Wenquandan777/SARMAE/SARMAE_vitl_checkpoint-last (ViT-L)" in out
    assert "hf://kiki-orb/phi-JEPA/weights/ijepa_vitb16_e100.pth.tar" in out
    assert "pan.baidu.com/s/1DOsZolLZ--gMuNUgUXeyVg" in out
    assert "sar_hog, sarjepa, sarjepa_gauss:" in out
    assert "kaggle.com/models/liweijie19/sar-jepa" in out


# --- hf:// weights through a local Hugging Face cache (no network) ---------------------------

REV = "0123456789abcdef0123456789abcdef01234567"
SARMAE_FILE = "SARMAE_vitb_checkpoint-last"


def hf_cache(tmp_path, repo: str, filename: str, source) -> Path:
    """The layout huggingface_hub reads: models--O--R/snapshots/<rev>/FILE and refs/main."""
    import shutil

    cache = tmp_path / "hf_cache"
    base = cache / ("models--" + repo.replace("/", "--"))
    target = base / "snapshots" / REV / filename
    target.parent.mkdir(parents=True)
    shutil.copyfile(source, target)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(REV)
    return cache


def _offline_env(cache) -> dict:
    import os

    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("HF_HOME", None)
    env["SARFEWSHOT_NO_PROGRESS"] = "1"
    return env


def test_eval_with_hf_weights_runs_offline_from_the_cache(vectors_dir, tmp_path):
    import json
    import subprocess
    import sys

    from sarfewshot.datasets.synthetic import generate_synthetic
    from sarfewshot.results.records import record_files

    ckpt = vectors_dir / "zoo" / "sarmae_ckpt.pth"
    cache = hf_cache(tmp_path, "Wenquandan777/SARMAE", SARMAE_FILE, ckpt)
    root = generate_synthetic(
        tmp_path / "synth", n_train_per_class=3, n_test_per_class=2, size=64, progress_bar=False
    )
    uri = f"hf://Wenquandan777/SARMAE/{SARMAE_FILE}"
    cmd = [
        sys.executable, "-m", "sarfewshot", "eval", "--backbone", "sarmae", "--weights", uri,
        "--arch", "heads=2", "--img-size", "64", "--dataset", "synthetic", "--root", str(root),
        "--shots", "1", "--protocol", "prototype", "--seeds", "1",
        "--output", str(tmp_path / "runs"), "INPUT.SAR.CROP", "0",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=_offline_env(cache), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (record,) = record_files(tmp_path / "runs")
    section = json.loads(record.read_text())["backbone"]
    assert section["weights"] == uri
    assert section["weights_sha256"] == sha256_file(ckpt)
    assert section["arch"].startswith("vit:patch=16,dim=64,depth=2,heads=2,chans=3")
    # a revision that is not cached fails offline with one line naming the URI
    bad = [*cmd]
    bad[bad.index(uri)] = uri + "@" + "f" * 40
    failed = subprocess.run(bad, env=_offline_env(cache), capture_output=True, text=True)
    assert failed.returncode == 2
    assert f"error: --weights {uri}@" in failed.stderr and "HF_HUB_OFFLINE" in failed.stderr


def test_weights_fetch_uses_the_first_hub_source(vectors_dir, tmp_path):
    import subprocess
    import sys

    ckpt = vectors_dir / "zoo" / "sarmae_ckpt.pth"
    cache = hf_cache(tmp_path, "Wenquandan777/SARMAE", SARMAE_FILE, ckpt)
    cmd = [sys.executable, "-m", "sarfewshot", "weights", "fetch", "sarmae"]
    done = subprocess.run(cmd, env=_offline_env(cache), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"snapshots/{REV}/{SARMAE_FILE}" in done.stdout
    assert f"--weights hf://Wenquandan777/SARMAE/{SARMAE_FILE}" in done.stdout
    missing = subprocess.run([*cmd[:-1], "ijepa"], env=_offline_env(cache), capture_output=True)
    assert missing.returncode == 2 and b"kiki-orb/phi-JEPA" in missing.stderr


def test_a_pinned_sha256_mismatch_names_both_hashes(vectors_dir, tmp_path, monkeypatch):
    import dataclasses

    import huggingface_hub.constants as hf_constants
    import pytest

    from sarfewshot.errors import WeightsError
    from sarfewshot.models import factory
    from sarfewshot.models.hub import WeightSource

    ckpt = vectors_dir / "zoo" / "sarmae_ckpt.pth"
    cache = hf_cache(tmp_path, "Wenquandan777/SARMAE", SARMAE_FILE, ckpt)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    real = factory.get_backbone_spec
    uri = f"hf://Wenquandan777/SARMAE/{SARMAE_FILE}"

    def pinned(digest):
        src = WeightSource("hf", "Wenquandan777/SARMAE", SARMAE_FILE, sha256=digest)
        return lambda name: dataclasses.replace(real(name), sources=(src,))

    monkeypatch.setattr(factory, "get_backbone_spec", pinned("ab" * 32))
    with pytest.raises(WeightsError) as err:
        factory.build_backbone("sarmae", weights=uri, arch="heads=2", img_size=64)
    assert sha256_file(ckpt) in str(err.value) and "ab" * 32 in str(err.value)
    monkeypatch.setattr(factory, "get_backbone_spec", pinned(sha256_file(ckpt)))
    net = factory.build_backbone("sarmae", weights=uri, arch="heads=2", img_size=64)
    assert net.backbone_info["weights"] == uri


def test_backbones_and_the_readme_name_the_same_forms(capsys):

    from sarfewshot.models import list_backbones

    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "torchgeo:<Enum>.<MEMBER>" in out and "timm:<model_name>" in out
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    zoo = readme[readme.index("## Backbone zoo") :]
    for name in [*list_backbones(), "timm:<model_name>", "torchgeo:<Enum>.<MEMBER>"]:
        assert f"`{name}`" in zoo, name


def test_backbones_torchgeo_lists_every_sar_member_with_its_status(capsys):
    pytest.importorskip("torchgeo.models")
    from sarfewshot.models.zoo.torchgeo import sar_members

    assert main(["backbones", "--torchgeo"]) == 0
    out = capsys.readouterr().out
    lines = {name: line for line in out.splitlines() for name in sar_members() if name in line}
    assert set(lines) == set(sar_members())  # every member, one line each
    assert lines["torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO"].rstrip().endswith("supported")
    closp = lines["torchgeo:ResNet50_Weights.SENTINEL1_GRD_CLOSP"]
    assert "refused: its torchgeo transforms (Identity) have no value normalisation" in closp
    assert "amplitude_8bit" in lines["torchgeo:Swin_V2_B_Weights.SENTINEL1_SI_SATLAS"]
    assert "SAR-band members:" in out
