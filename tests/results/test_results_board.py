"""The board's data (``build_board``) and its page (``render_board``), without a browser."""

from __future__ import annotations

import json
import re

import pytest

from sarfewshot.cli.main import main
from sarfewshot.errors import SarFewShotError
from sarfewshot.results.aggregate import aggregate_records
from sarfewshot.results.board import (
    IN_DISTRIBUTION,
    build_board,
    default_references,
    record_condition,
)
from sarfewshot.results.board_page import render_board
from sarfewshot.results.compare import paired_compare
from sarfewshot.results.records import write_record
from tests.results.boardkit import EVIL, board_record, board_records
from tests.results.recordkit import fake_record


def _line(board, label, protocol):
    (line,) = [r for r in board["rows"] if r["label"] == label and r["protocol"] == protocol]
    return line


def _column(board, dataset="mstar", shots=5, condition=IN_DISTRIBUTION):
    want = {"dataset": dataset, "condition": condition, "shots": shots}
    return board["columns"].index(want)


def test_cells_are_the_leaderboard_rows():
    records = board_records()
    board = build_board(records, references=[])
    rows = aggregate_records(records)
    assert len(board["details"]) == len(rows)
    assert {(r["label"], r["protocol"]) for r in board["rows"]} == {
        (b, p) for b in ("sarjepa", "random", EVIL) for p in ("linear", "knn")
    }
    for row in rows:
        cell = _line(board, row.backbone, row.protocol)["cells"][_column(board, shots=row.shots)]
        assert cell["mean"] == round(row.acc_mean, 2) and cell["n"] == row.n_seeds
        assert cell["std"] == round(row.acc_std, 2) and cell["ci95"] == round(row.acc_ci95, 2)


def test_failed_and_diverged_cells_are_listed_not_averaged():
    board = build_board(board_records(), references=[])
    cell = _line(board, "sarjepa", "linear")["cells"][_column(board, shots=5)]
    assert (cell["n"], cell["failed"], cell["diverged"]) == (3, 1, 1)
    assert {(c["seed"], c["status"]) for c in board["not_counted"]} == {
        (4, "failed"),
        (5, "diverged"),
    }
    counted = build_board(board_records(), references=[], include_diverged=True)
    cell = _line(counted, "sarjepa", "linear")["cells"][_column(counted, shots=5)]
    assert cell["n"] == 4 and [c["seed"] for c in counted["not_counted"]] == [4]


def test_detail_holds_per_class_mean_confusion_and_seeds():
    records = board_records()
    board = build_board(records, references=[])
    cell = _line(board, "random", "knn")["cells"][_column(board, shots=1)]
    detail = board["details"][cell["detail"]]
    mine = [
        r
        for r in records
        if r["key"]["backbone"] == "random" and r["protocol"] == "knn" and r["shots"] == 1
    ]
    for entry in detail["per_class"]:
        values = [r["metrics"]["per_class_accuracy"][entry["name"]] for r in mine]
        assert entry["acc"] == pytest.approx(sum(values) / len(values), abs=0.005)
        assert entry["n"] == 3
    assert [s["seed"] for s in detail["seeds"]] == [1, 2, 3]
    assert [s["acc"] for s in detail["seeds"]] == [r["metrics"]["accuracy"] for r in mine]
    assert detail["confusion"]["matrix"][0] == [5.0, 1.0, 0.0]
    assert detail["confusion"]["classes"] == ["2S1", "BMP2", "T72"]


def test_provenance_names_what_produced_a_row():
    records = board_records()
    for rec in records:
        rec["backbone"]["precision"] = "fp32"
        rec["execution"] = {"executor": "batched", "group_size": 3}
        rec["dataset"]["fingerprint"] = {"sha256": "f" * 64}
    prov = _line(build_board(records, references=[]), "sarjepa", "linear")["provenance"]
    assert prov["weights sha256"] == ["a" * 64] and prov["weights source"] == ["/w/ckpt.pth"]
    assert prov["dataset fingerprint"] == ["mstar: " + "f" * 64] and prov["precision"] == ["fp32"]
    assert prov["executor"] == ["batched"] and prov["host"] == ["node1"]
    assert prov["sarfewshot"] == ["0.1.0"] and prov["torch"] == ["x"] and prov["timm"] == ["x"]
    assert len(prov["config sha256"]) == 1


def test_other_configs_are_separate_marked_rows():
    records = board_records()
    records.append(board_record("random", "linear", 1, 4, config={"OPTIM": {"LR": 0.1}}))
    board = build_board(records, references=[])
    labels = sorted(r["label"] for r in board["rows"] if r["protocol"] == "linear")
    assert sum(label.startswith("random {cfg ") for label in labels) == 2
    assert any("different configs" in note for note in board["notes"])


def test_comparisons_call_compare_with_holm():
    records = board_records()
    board = build_board(records, references=["random"])
    assert board["adjust"] == "holm" and board["references"] == ["random"]
    (cmp,) = board["comparisons"]
    pair = next(p for p in cmp["pairs"] if p["against"] == "sarjepa")
    expected = paired_compare(records, "sarjepa", "random", adjust="holm")
    assert [g["p_t_adj"] for g in pair["groups"]] == [g["p_t_adj"] for g in expected["groups"]]
    assert [g["significant"] for g in pair["groups"]] == [
        g["p_t_adj"] is not None and g["p_t_adj"] < 0.05 for g in expected["groups"]
    ]
    assert default_references(records) == sorted([EVIL, "random", "sarjepa"])
    assert "No reference backbone" in render_board(build_board(records, references=[]))
    with pytest.raises(SarFewShotError, match="--reference nope"):
        build_board(records, references=["nope"])


def test_shot_curves_have_bands_per_backbone():
    board = build_board(board_records(), references=[])
    panel = next(p for p in board["curves"] if p["protocol"] == "knn")
    series = {s["label"]: s["points"] for s in panel["series"]}
    assert set(series) == {"sarjepa", "random", EVIL}
    point = series["random"][0]
    assert point["k"] == 1 and point["low"] < point["mean"] < point["high"]


def test_conditions_give_robustness_and_stay_apart():
    records = board_records()
    assert record_condition(records[0]) == IN_DISTRIBUTION
    assert build_board(records, references=[])["robustness"] is None
    by_cond = []
    for rec in records[:18]:  # the linear cells, as `eval --conditions` keys them
        if rec["status"] == "ok":
            for cond, loss in (("id", 0.0), ("speckle", 10.0)):
                copy = json.loads(json.dumps(rec))
                dataset = copy["key"]["dataset"]
                copy["key"].update(setting=dataset, condition=cond, dataset=f"{dataset}:{cond}")
                copy["metrics"]["accuracy"] -= loss
                by_cond.append(copy)
    board = build_board(by_cond, references=[])
    assert board["has_conditions"]
    # one dataset column group (the setting), the conditions side by side
    assert _column(board, shots=5, condition="speckle") > _column(board, shots=5)
    rob = board["robustness"]
    assert rob["conditions"] == ["speckle"]
    line = next(x for x in rob["lines"] if x["label"] == "sarjepa" and x["shots"] == 5)
    assert line["dataset"] == "mstar" and line["values"][0]["drop"] == pytest.approx(10.0)
    assert "speckle" in render_board(board)


def test_page_escapes_record_values_everywhere():
    board = build_board(board_records(), references=[EVIL], command="sarfewshot board r --out s")
    page = render_board(board)
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    data = re.search(
        r'<script type="application/json" id="board-details">(.*?)</script>', page, re.S
    )
    assert "\\u003cscript\\u003e" in data.group(1) and "<" not in data.group(1)
    assert json.loads(data.group(1))[0]["title"]
    assert "sarfewshot board r --out s" in page


def test_page_is_self_contained():
    page = render_board(build_board(board_records(), references=[]))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page  # the page may not load anything


def test_cli_board_and_leaderboard_html(tmp_path, capsys):
    run = tmp_path / "run"
    for rec in board_records():
        write_record(run, rec)
    site = tmp_path / "site"
    assert main(["board", str(run), "--out", str(site), "--reference", "sarjepa"]) == 0
    page = (site / "index.html").read_text()
    assert f"wrote {site / 'index.html'}" in capsys.readouterr().out
    assert f"sarfewshot board {run} --out {site} --reference sarjepa" in page
    assert main(["leaderboard", str(run), "--html", str(tmp_path / "alias")]) == 0
    assert (tmp_path / "alias" / "index.html").is_file()
    assert main(["board", str(tmp_path / "nothing"), "--out", str(site)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_empty_board_is_an_error():
    with pytest.raises(SarFewShotError, match="at least one record"):
        build_board([])
    assert fake_record()["status"] == "ok"


def test_dassl_log_runs_join_the_board_marked(tmp_path):
    from sarfewshot.results.dassl_logs import records_from_dassl_runs
    from tests.results.recordkit import dassl_log

    for seed, acc in ((1, 70.0), (2, 72.5)):
        log = tmp_path / "output" / "mstar_soc" / "MIM_linear" / "vit_b16_10shots" / f"seed{seed}"
        log.mkdir(parents=True)
        (log / "log.txt").write_text(dassl_log(seed=seed, acc=acc, config=False))
    records = records_from_dassl_runs([tmp_path / "output"])
    board = build_board(records + board_records(), references=[])
    (line,) = [r for r in board["rows"] if r["label"].endswith(" *")]
    cell = next(c for c in line["cells"] if c is not None)
    assert cell["mean"] == 71.25 and cell["n"] == 2
    assert line["provenance"]["source"] == ["dassl_log"]
    assert any("Dassl log.txt" in note for note in board["notes"])
    detail = board["details"][cell["detail"]]
    assert [s["seed"] for s in detail["seeds"]] == [1, 2]
    assert "one-decimal" in render_board(board)


def test_the_whole_pool_is_k_all_last_and_off_the_k_curves():
    """K = -1 (``--shots all``) reads ``K=all`` on the page, after the numbered Ks, and has no
    place on a K axis (as in the leaderboard's tables and PNG curves)."""
    records = [board_record("random", "knn", k, seed) for k in (-1, 1, 5) for seed in (1, 2)]
    records.append(
        fake_record(backbone="random", protocol="knn", shots=-1, seed=3, status="failed")
    )
    board = build_board(records, references=[])
    assert [c["shots"] for c in board["columns"]] == [1, 5, -1]
    (panel,) = board["curves"]
    assert [p["k"] for s in panel["series"] for p in s["points"]] == [1, 5]
    assert any(d["title"].endswith("· K=all") for d in board["details"])
    page = render_board(board)
    assert ">K=all</button>" in page and "K=-1" not in page and "<td>-1</td>" not in page
    assert '<option value="-1">all</option>' in page


def test_cells_carry_the_contamination_and_missing_class_marks():
    """The notes under the board explain § and ‡, so the cells they apply to must carry them
    (as the leaderboard's cells do)."""
    records = board_records()
    for rec in records:
        if rec["key"]["backbone"] == "sarjepa" and rec["key"]["shots"] == 1:
            rec["contamination"] = {"seen": 4, "scored": 18, "method": "sha256"}
        if rec["key"]["backbone"] == "random" and rec["key"]["protocol"] == "knn":
            rec["dataset"]["missing_classes"] = {"TEST": ["T72"]}
    board = build_board(records, references=[])
    marks = {
        (line["label"], line["protocol"], cell.get("seen"), cell.get("missing"))
        for line in board["rows"]
        for cell in line["cells"]
        if cell and (cell.get("seen") or cell.get("missing"))
    }
    assert marks == {("sarjepa", p, True, False) for p in ("linear", "knn")} | {
        ("random", "knn", False, True)
    }
    page = render_board(board)
    assert page.count(" §</button>") == 2 and page.count(" ‡</button>") == 2


def test_comparison_interval_says_what_it_is_over():
    page = render_board(build_board(board_records(), references=["sarjepa"]))
    assert "paired Student-t interval over seeds, unadjusted" in page


def test_out_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    run = tmp_path / "run"
    for rec in board_records():
        write_record(run, rec)
    (tmp_path / "page.html").write_text("old")
    assert main(["board", str(run), "--out", str(tmp_path / "page.html")]) == 2
    assert "page.html is a file" in capsys.readouterr().err
