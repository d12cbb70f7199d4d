"""``scripts/bench/gpu_check.py``: the GPU check's CPU dry run, so the script cannot rot between
GPU loans. Every stage runs at a tiny scale; the JSON must carry every field the docs name."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import elastic_folders

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "gpu_check.py"
STAGES = ("release_grid", "pretrain", "bf16_eval", "ddp")
RUN_FIELDS = {
    "attention", "fused_adamw", "compiled", "ms_per_step", "images_per_s", "tflops", "mfu",
    "final_loss", "loss_rel_diff_vs_eager", "loss_within_tol", "first_step_s",
}  # fmt: skip


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _check_header(data: dict, dry_run: bool) -> None:
    assert data["format"] == "sarfewshot-gpu-check" and data["version"] == 1
    assert data["dry_run"] is dry_run and data["date"].endswith("UTC")
    assert {"budget_s", "elapsed_s", "command", "scale", "stages", "skips"} <= set(data)
    assert set(data["device"]) == {"type", "name", "driver", "cuda", "capability", "memory_gib"}
    assert {"python", "torch", "sarfewshot", "platform"} <= set(data["software"])


def test_the_cpu_dry_run_runs_every_stage_and_records_every_field(tmp_path, private_tmpdir):
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--device", "cpu", "--serial", "sample",
           "--out", str(out), "--work", str(tmp_path / "work")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SARFEWSHOT_NO_PROGRESS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    _check_header(data, dry_run=True)
    assert data["device"]["type"] == "cpu"
    for name in STAGES:
        stage = data["stages"][name]
        assert stage["status"] == "done", (name, stage)
        assert stage["wall_s"] > 0 and stage["estimate_s"] > 0
    grid = data["stages"]["release_grid"]["figures"]
    assert grid["cells"] == 2 * (5 + 6)  # K 1, 2 x (5 fine-tune + 6 linear seeds)
    assert grid["serial_kind"].startswith("extrapolated") and grid["serial_s"] > 0
    assert grid["batched_equals_serial"] is True and grid["within_target"] is None
    pre = data["stages"]["pretrain"]["figures"]
    assert pre["attention_paths"] == ["eager", "sdpa"] and pre["precision"] == "fp32"
    assert len(pre["runs"]) == 5  # eager, SDPA x AdamW default, fused; SDPA compiled
    for label, run in pre["runs"].items():
        assert set(run) >= RUN_FIELDS, label
        assert run["loss_within_tol"] is True and run["mfu"] is None  # no bf16 peak for a CPU
    assert {"stage": "pretrain", "part": "flex_irpe"}.items() <= data["skips"][0].items()
    ev = data["stages"]["bf16_eval"]["figures"]
    assert ev["load"]["missing"] == 0 and ev["load"]["loaded"] > 0
    assert ev["features"]["max_abs"] > 0 and ev["features"]["min_cosine"] > 0.99
    assert set(ev["accuracy_fp32"]) == set(ev["accuracy_bf16"])
    ddp = data["stages"]["ddp"]["figures"]
    assert ddp["allowed"] is True and ddp["equal"] is True
    summary = (out / "gpu_check.md").read_text()
    for text in ("Release grid", "Pretraining", "bf16 vs fp32", "DDP", "flex_irpe"):
        assert text in summary
    assert elastic_folders(private_tmpdir)  # the DDP stage's torchrun log folder, not in /tmp


def test_stages_that_do_not_fit_the_budget_are_skipped_with_the_reason(tmp_path, capsys):
    gpu_check = _load_script()
    out = tmp_path / "out"
    argv = ["--dry-run", "--device", "cpu", "--budget-s", "0.5", "--out", str(out),
            "--work", str(tmp_path / "work")]  # fmt: skip
    assert gpu_check.main(argv) == 0
    data = json.loads((out / "gpu_check.json").read_text())
    _check_header(data, dry_run=True)
    assert [data["stages"][s]["status"] for s in STAGES] == ["skipped"] * 4
    assert [s["stage"] for s in data["skips"]] == list(STAGES)
    assert all("of the budget left" in s["why"] for s in data["skips"])
    assert gpu_check.main([*argv, "--stages", "grid"]) == 2
    assert "--stages" in capsys.readouterr().err


def test_the_budget_learns_from_a_slow_part():
    budget = _load_script().Budget(100.0)
    assert budget.fits(90)
    budget.learn(10, 30)  # three times slower than estimated
    assert budget.factor == 3 and not budget.fits(40) and budget.fits(30)
