"""`sarfewshot backbones`: the listing and whether weights are found."""

from __future__ import annotations

from sarfewshot.cli.main import main


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
