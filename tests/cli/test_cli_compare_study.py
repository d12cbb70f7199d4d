"""The MSTAR study's report (second edition): pooled runs, crossed intervals, Holm marks, and
doc tables that are renderings of the committed CSVs."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sarfewshot.results.records import iter_records, write_record
from sarfewshot.utils.io import sha256_file
from tests.results.recordkit import fake_record

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "mstar_study.sh"
RANDOM = "random@irpe:patch=8,dim=128,depth=4,heads=4"  # the script's IRPE_ARCH label

# sarjepa - lomar, both runs alike: one group (linear K=1) whose unadjusted p is about 0.018
# (its t interval excludes 0) that Holm over the 8 groups lifts above 0.05; the rest centre on 0
CLOSE = (1.0, 3.0, 0.5, 2.5, 2.0)
LEVEL = (1.0, -1.0, 2.0, -2.0, 0.5)
FAR = (19.0, 21.0, 20.5, 19.5, 20.2)  # sarjepa - random: significant everywhere
RUN_GAP = 6.0  # lomar's second run is this much better than its first everywhere


def _load_report():
    spec = importlib.util.spec_from_file_location(
        "study_report", REPO / "scripts" / "mstar_study_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up by name
    spec.loader.exec_module(module)
    return module


def _pretrain_run(
    out: Path, rel: str, method: str, seed: int, lr: float = 1e-3, norm_pix: bool = False
) -> str:
    """A finished pretraining folder (config, log, distinct checkpoint); its sha256."""
    run = out / rel
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        f"METHOD: {method}\nSEED: {seed}\nDATA:\n  BATCH_SIZE: 32\n"
        f"OPTIM:\n  LR: {lr}\n  EPOCHS: 30\nTARGET:\n  NORM_PIX: {str(norm_pix).lower()}\n"
    )
    log = {"step": 2550, "loss": 0.07, "target_var": 0.1, "img_s": 100.0}
    (run / "log.jsonl").write_text(json.dumps(log) + "\n")
    (run / "checkpoint-last.pth").write_bytes(rel.encode())
    (run / "done").touch()
    return sha256_file(run / "checkpoint-last.pth")


def _study(out: Path) -> None:
    rng = random.Random(11)
    shas = {
        (m, s): _pretrain_run(out, f"pretrain/{m}/seed{s}", m, s)
        for m in ("sarjepa", "lomar")
        for s in (0, 1)
    }
    (out / "times.tsv").write_text("pretrain pretrain/sarjepa/seed0\t400\n")
    for protocol in ("linear", "knn"):
        for shots in (1, 5, 10, 20):
            lomar = CLOSE if (protocol, shots) == ("linear", 1) else LEVEL
            for seed in range(1, 6):
                base = rng.uniform(40, 60)
                rows = [(RANDOM, None, base - FAR[seed - 1])]
                for s in (0, 1):  # lomar's runs straddle its mean: -gap/2, +gap/2
                    rows.append(("sarjepa", shas[("sarjepa", s)], base))
                    gap = RUN_GAP * (s - 0.5)
                    rows.append(("lomar", shas[("lomar", s)], base - lomar[seed - 1] + gap))
                for name, sha, acc in rows:
                    rec = fake_record(
                        backbone=name, sha=sha, protocol=protocol, shots=shots, seed=seed, acc=acc
                    )
                    write_record(out / "eval", rec)


def _block(doc: str, name: str) -> str:
    return re.search(rf"<!-- study:{name} -->\n(.*?)\n<!-- /study:{name} -->", doc, re.S)[1]


@pytest.mark.slow
def test_study_report_pools_runs_and_marks_holm_adjusted_differences(tmp_path):
    out, docs, doc = tmp_path / "out", tmp_path / "docs", tmp_path / "study.md"
    _study(out)
    names = ("pretraining", "results", "pretrain_seed_spread", "comparisons")
    doc.write_text("".join(f"<!-- study:{n} -->\nold\n<!-- /study:{n} -->\n" for n in names))
    env = {
        **os.environ,
        **{"OUT": str(out), "DOCS": str(docs), "DOC": str(doc), "STAGES": "report"},
        **{"METHODS": "sarjepa lomar", "PY": sys.executable},
        "SFS": f"{sys.executable} -m sarfewshot",
    }
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = _load_report()
    results = report.read_csv(docs / "results.csv")
    lomar = {(r["protocol"], r["shots"]): r for r in results if r["backbone"] == "lomar"}
    assert all(r["runs"] == "2" and r["seeds"] == "5" for r in lomar.values())
    means = [float(m) for m in lomar[("knn", "5")]["run_means"].split(";")]
    assert means[1] - means[0] == pytest.approx(RUN_GAP)
    # the run-to-run gap widens the interval far past the seeds' spread
    assert float(lomar[("knn", "5")]["ci95"]) > RUN_GAP
    rows = {
        (r["b"], r["protocol"], r["shots"]): r for r in report.read_csv(docs / "comparisons.csv")
    }
    close = rows[("lomar", "linear", "1")]
    assert float(close["ci_low"]) > 0 and float(close["p_t"]) < 0.05  # unadjusted: "significant"
    assert float(close["p_t_adj"]) > 0.05 and close["adjust"] == "holm"
    # +1.8 pooled, but lomar's better run beats either sarjepa run (+1.8 - 3): 2 of 4 agree
    assert (close["run_pairs"], close["run_pairs_agree"]) == ("4", "2")
    far = [r for (b, *_), r in rows.items() if b == "random"]
    assert len(far) == 8 and all(float(r["p_t_adj"]) < 0.05 for r in far)
    text = doc.read_text()
    assert "old" not in text
    table = _block(text, "comparisons")
    assert table.count("**") == 16 and "random" in table  # bold: the 8 random groups only
    for name in names:  # the doc's tables are renderings of the committed CSVs
        source = "results" if name == "pretrain_seed_spread" else name
        assert _block(text, name) == report.render(name, report.read_csv(docs / f"{source}.csv"))


def test_select_picks_each_methods_best_validation_knn_and_fills_the_doc_block(tmp_path):
    out, docs, doc = tmp_path / "out", tmp_path / "docs", tmp_path / "study.md"
    # (method, norm_pix, lr) -> val kNN accuracy; mae's tie at 60 goes to the smaller LR
    accs = {
        ("sarjepa", False, 3e-4): 50.0, ("sarjepa", False, 1e-3): 70.0,
        ("sarjepa", False, 3e-3): 65.0, ("mae", False, 3e-4): 60.0, ("mae", False, 1e-3): 55.0,
        ("mae", True, 3e-4): 58.0, ("mae", True, 1e-3): 60.0, ("hog", False, 1e-3): 99.0,
    }  # fmt: skip
    for (method, norm_pix, lr), acc in accs.items():
        name = method + ("_normpix" if norm_pix else "")
        sha = _pretrain_run(out, f"sweep/{name}/lr{lr:g}", method, 0, lr, norm_pix)
        for seed in (1, 2, 3):
            # mean acc, sd 1
            rec = fake_record(
                backbone=method, sha=sha, protocol="knn", shots=10, seed=seed, acc=acc + seed - 2
            )
            write_record(out / "sweep_eval", rec)
    doc.write_text("intro\n<!-- study:lr_selection -->\nold\n<!-- /study:lr_selection -->\n")
    report = _load_report()
    report.main(
        ["select", "--runs", str(out), "--methods", "sarjepa", "mae", "--out", str(out / "sel")]
        + ["--csv", str(docs / "lr.csv"), "--markdown", str(docs / "lr.md"), "--doc", str(doc)]
    )
    assert (out / "sel").read_text() == "sarjepa 0.001 False\nmae 0.0003 False\n"
    rows = report.read_csv(docs / "lr.csv")
    assert len(rows) == 7 and not any(r["method"] == "hog" for r in rows)  # not asked for
    assert {r["val_knn_sd"] for r in rows} == {"1.000"} and {r["cells"] for r in rows} == {"3"}
    text = doc.read_text()
    assert text.startswith("intro\n") and "old" not in text
    assert _block(text, "lr_selection") == report.render("lr_selection", rows)
    empty = "<!-- study:a -->\n<!-- /study:a -->"  # a freshly added block fills too
    assert report.replace_block(empty, "a", "T") == "<!-- study:a -->\nT\n<!-- /study:a -->"


def test_committed_study_tables_match_their_csvs():
    doc = (REPO / "docs" / "mstar_study.md").read_text()
    names = re.findall(r"<!-- study:(\w+) -->", doc)
    if not names:
        pytest.skip("docs/mstar_study.md holds no generated tables yet")
    report = _load_report()
    for name in names:
        source = "results" if name == "pretrain_seed_spread" else name
        rows = report.read_csv(REPO / "docs" / "mstar_study" / f"{source}.csv")
        assert _block(doc, name) == report.render(name, rows), name


def test_equal_time_uses_cpu_seconds_summed_over_resumed_pieces(tmp_path, capsys):
    report = _load_report()
    (tmp_path / "times.tsv").write_text(
        "pretrain pretrain/sarjepa/seed0\t700\t1000\n"  # interrupted, then resumed
        "pretrain pretrain/sarjepa/seed0\t300\t500\n"
        "pretrain pretrain/mae/seed0\t900\t600\n"  # slow wall clock: the machine was busy
    )
    assert report.run_times(tmp_path)["pretrain pretrain/sarjepa/seed0"] == (1000, 1500)
    report.main(["equal-time", "--runs", str(tmp_path), "--seed", "0", "--epochs", "30"])
    assert capsys.readouterr().out.strip() == "75"  # 30 * 1500 / 600
    (tmp_path / "times.tsv").write_text("pretrain pretrain/sarjepa/seed0\t700\n")
    with pytest.raises(SystemExit, match="no CPU time"):
        report.main(["equal-time", "--runs", str(tmp_path), "--seed", "0", "--epochs", "30"])


def test_the_trainers_clock_wins_over_the_command_times(tmp_path, capsys):
    # a killed piece never reaches times.tsv; the trainer's clock in log.jsonl still has it
    report = _load_report()
    (tmp_path / "times.tsv").write_text(
        "pretrain pretrain/sarjepa/seed0\t300\t500\npretrain pretrain/mae/seed0\t900\t600\n"
    )
    for method, cpu in (("sarjepa", 1200.0), ("mae", 400.0)):
        run = tmp_path / "pretrain" / method / "seed0"
        run.mkdir(parents=True)
        lines = [
            {"step": 50, "wall_s": 90.0, "cpu_s": 80.0},
            {"step": 99, "wall_s": 2e3, "cpu_s": cpu},
        ]
        (run / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    times = report.run_times(tmp_path)
    assert report.run_seconds(tmp_path, "pretrain/sarjepa/seed0", times) == (2000.0, 1200.0)
    assert report.run_seconds(tmp_path, "pretrain/hog/seed0", times) == (None, None)
    report.main(["equal-time", "--runs", str(tmp_path), "--seed", "0", "--epochs", "30"])
    assert capsys.readouterr().out.strip() == "90"  # 30 * 1200 / 400


def test_a_partial_grid_reports_the_cells_it_has(tmp_path, capsys):
    # while the eval stage still runs: lomar has no records, random lacks knn K=20
    out = tmp_path / "out"
    _study(out)
    report = _load_report()
    runs = report.find_runs(out, "pretrain")
    records = [
        r
        for r in iter_records([out / "eval"])
        if r["key"]["backbone"] != "lomar"
        and not (
            r["key"]["backbone"] == RANDOM
            and (r["key"]["protocol"], r["key"]["shots"]) == ("knn", 20)
        )
    ]
    table = report.accuracies(records, runs)
    rows = report.compare_rows(records, runs, table, "sarjepa", ["lomar", "random"], "holm")
    assert {r["b"] for r in rows} == {"random"} and len(rows) == 7
    assert "sarjepa vs lomar left out" in capsys.readouterr().err
    (tmp_path / "results.csv").write_text(
        report.csv_text(report.result_rows(table, ["sarjepa", "random"]), report.RESULT_COLUMNS)
    )
    table_md = report.render("results", report.read_csv(tmp_path / "results.csv"))
    knn_random = next(line for line in table_md.splitlines() if "| knn | random" in line)
    assert knn_random.startswith("| knn | random (1 run) |") and knn_random.endswith("| - |")


def test_selection_check_scores_the_chosen_run_after_the_fact(tmp_path):
    out = tmp_path / "out"
    _study(out)  # the full runs and their TEST records
    report = _load_report()
    sweep = {
        lr: _pretrain_run(out, f"sweep/sarjepa/lr{lr}", "sarjepa", 0, lr=lr) for lr in (3e-4, 1e-3)
    }
    (out / "selection.tsv").write_text("sarjepa 0.0003 False\nlomar 0.003 False\n")
    full = {r.path: sha for sha, r in report.find_runs(out, "pretrain").items()}
    scores = [  # folder, weights, accuracy of each of the 2 x 3 selection cells
        ("sweep_eval", sweep[3e-4], 46.0),
        ("sweep_eval", sweep[1e-3], 40.0),  # not chosen: left out
        ("check_test", sweep[3e-4], 38.0),
        ("check_val", full["pretrain/sarjepa/seed0"], 50.0),
        ("check_val", full["pretrain/sarjepa/seed1"], 52.0),
    ]
    for folder, sha, acc in scores:
        for shots in (10, 20):
            for seed in (1, 2, 3):
                rec = fake_record(sha=sha, protocol="knn", shots=shots, seed=seed, acc=acc)
                write_record(out / folder, rec)
    runs = report.find_runs(out, "pretrain")
    test_full = report.accuracies(iter_records([out / "eval"]), runs)
    rows = {r["method"]: r for r in report.check_rows(out, ["sarjepa", "lomar"], runs, test_full)}
    want_test = [
        a
        for (arm, _, p, k, s), a in test_full.items()
        if arm == "sarjepa" and p == "knn" and k in (10, 20) and s <= 3
    ]
    assert rows["sarjepa"]["val_10"] == "46.000" and rows["sarjepa"]["test_10"] == "38.000"
    assert rows["sarjepa"]["val_full"] == "51.000" and rows["sarjepa"]["cells"] == 6
    assert float(rows["sarjepa"]["test_full"]) == pytest.approx(sum(want_test) / 12, abs=1e-3)
    assert len(want_test) == 12  # 2 runs x K 10, 20 x seeds 1-3; K = 1, 5 and seeds 4, 5 left out
    assert "lomar" not in rows  # no sweep run of the chosen LR: no row


def test_run_unit_table_is_rebuilt_from_the_committed_csvs():
    report = _load_report()
    docs = REPO / "docs" / "mstar_study"
    if not (docs / "run_unit.csv").exists():
        pytest.skip("docs/mstar_study/run_unit.csv is not committed yet")
    means = report.committed_run_means(docs / "leaderboard_runs.csv", docs / "results.csv")
    assert (
        len(means[("sarjepa", "linear", 20)]) == 2 and len(means[("mae_equal_time", "knn", 5)]) == 1
    )
    others = list(dict.fromkeys(r["b"] for r in report.read_csv(docs / "comparisons.csv")))
    rows = report.run_unit_rows(means, "sarjepa", others, "holm")
    committed = report.read_csv(docs / "run_unit.csv")
    assert len(rows) == len(committed) == 96
    for row, line in zip(rows, committed):
        assert (row["b"], row["protocol"], str(row["shots"])) == (
            line["b"],
            line["protocol"],
            line["shots"],
        )
        for field in ("mean_diff", "p", "p_adj", "mdd80"):
            assert row[field] == pytest.approx(float(line[field]), rel=1e-9)
    # the run-unit test finds no MAE - SAR-JEPA group below 0.05, even unadjusted
    assert min(r["p"] for r in rows if r["b"] == "mae") > 0.05


def test_blocks_stage_dry_run_prints_its_plan_and_budget(tmp_path):
    env = {
        **os.environ,
        "DRY_RUN": "1",
        "STAGES": "blocks",
        "OUT": str(tmp_path / "out"),
        "PY": sys.executable,
        "SFS": "sarfewshot",
        "JOBS": "2",
    }
    res = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "--exclude-split mstar_soc:val" in out and "DATASET.VAL_POOL_RULE blocks" in out
    # the pretraining options are pretraining config keys: the excluded pool is drawn under the
    # evaluations' pool keys (pretraining has no DATASET section)
    from sarfewshot.pretrain.config import setup_pretrain_cfg

    pretrain_opts = re.search(r"PRETRAIN_OPTS=(.*)", out)[1].split()  # split as the script does
    eval_opts = re.search(r"EVAL_OPTS=(.*)", out)[1].split()
    cfg = setup_pretrain_cfg(opts=pretrain_opts)
    assert [str(x) for x in cfg.DATA.EXCLUDE_EVAL_OPTS] == eval_opts
    assert eval_opts == ["DATASET.VAL_POOL", "0.2", "DATASET.VAL_POOL_RULE", "blocks"]
    assert "| pretrain | 10 |" in out and "| sweep | 21 |" in out and "| total |" in out
    assert "wall time at 2 run(s) at once" in out
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
