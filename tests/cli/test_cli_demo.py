"""``sarfewshot demo --quick``: data, tiny SAR-JEPA pretraining, grid, table, next command."""

from __future__ import annotations

from sarfewshot.cli.main import main
from sarfewshot.results.records import read_record, record_files


def test_quick_demo_runs_resumes_and_stays_out_of_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick"]) == 0
    text = capsys.readouterr().out
    out = tmp_path / "sarfewshot-demo-quick"
    assert "0 cells already done, 24 to run" in text
    assert "random@irpe_vit_micro_patch8" in text and "sarjepa" in text
    assert "sarfewshot eval --backbone sarjepa --weights" in text and "--dataset mstar" in text
    assert (out / "runs" / "leaderboard.csv").is_file()
    page = out / "board" / "index.html"
    assert f"board: {page.relative_to(tmp_path)}" in text
    assert "sarfewshot board sarfewshot-demo-quick/runs --out sarfewshot-demo-quick/board" in (
        page.read_text()
    )
    assert not (tmp_path / "runs").exists(), "the demo wrote into eval's default folder"
    records = [read_record(p) for p in record_files(out / "runs")]
    assert {r["protocol"] for r in records} == {"linear", "knn", "prototype"}
    pretrained = [r for r in records if r["key"]["backbone"] == "sarjepa"]
    assert pretrained and all(r["key"]["weights_sha256"] for r in pretrained)
    assert pretrained[0]["backbone"]["weights"].endswith("checkpoint-last.pth")
    # everything is reused the second time
    assert main(["demo", "--quick"]) == 0
    again = capsys.readouterr()
    assert "24 cells already done, 0 to run" in again.out
    # a rerun trains nothing and says so; no notes about TensorBoard or a CPU's MFU
    assert "(finished earlier, reused)" in again.out
    assert "MFU" not in again.out + text and "TensorBoard" not in again.err
    assert "near chance" in text and "by design" in text
    # the next command (an eval into the default runs/) prints none of the demo's rows
    argv = ["eval", "--backbone", "random", "--arch", "irpe_vit_micro_patch8", "--img-size",
            "32", "--dataset", "synthetic", "--root", str(out / "data"), "--shots", "1",
            "--protocol", "knn", "--seeds", "1", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out.split("1 to run", 1)[1]
    assert "random@irpe_vit_micro_patch8" in table
    assert "sarjepa" not in table and "prototype" not in table and "linear" not in table
