"""``sarfewshot board`` on real grid records: a tiny MSTAR grid plus a demo-like synthetic run.

The records come from the real grid (no hand-built record), the page from the CLI, and the
page is checked in headless Chromium: offline, no console error, a cell's per-class accuracy
equal to the records'. Skipped with a message when ../shared/data is absent.
"""

from __future__ import annotations

import pytest

from sarfewshot.cli.demo import QUICK, make_data
from sarfewshot.cli.main import main
from sarfewshot.engine.grid import BackboneRequest, GridRequest, run_grid
from sarfewshot.results.records import iter_records
from tests.results.browser import launch, open_page

pytestmark = [pytest.mark.realdata, pytest.mark.browser]

ARCH = "irpe_vit_micro_patch8"


def _grid(root, dataset: str, output, seeds=(1, 2)) -> None:
    req = GridRequest(
        backbones=[BackboneRequest("random", None, ARCH)],
        datasets=[dataset],
        shots=[1, 2],
        protocols=["knn", "prototype"],
        seeds=list(seeds),
        output=output,
        root=str(root),
        device="cpu",
        img_size=32,
        progress=False,
    )
    summary = run_grid(req, printer=lambda *_: None)
    assert summary.failed == 0


@pytest.fixture(scope="module")
def browser():
    yield from launch()


def test_board_from_a_real_mstar_grid_and_a_demo_run(mstar_soc_root, tmp_path, capsys, browser):
    _grid(mstar_soc_root, "mstar", tmp_path / "mstar")
    demo = tmp_path / "demo"
    _grid(make_data(demo, QUICK), "synthetic", demo / "runs")
    site = tmp_path / "site"
    argv = ["board", str(tmp_path / "mstar"), str(demo / "runs"), "--out", str(site)]
    assert main(argv) == 0
    assert f"wrote {site / 'index.html'}" in capsys.readouterr().out
    page, watch = open_page(browser, site / "index.html")
    try:
        assert page.locator("#board-table thead th.group").all_inner_texts() == [
            "mstar_soc",
            "synthetic",
        ]
        assert page.locator("#curve-panels figure").count() == 4  # 2 datasets x 2 protocols
        cell = page.locator('#board-table tbody tr[data-protocol="prototype"] td[data-shots="2"]')
        cell.locator("button.cell").first.click()
        assert page.locator("#detail-title").inner_text().endswith("mstar_soc · K=2")
        records = [
            r
            for r in iter_records([tmp_path / "mstar"])
            if (r["protocol"], r["shots"]) == ("prototype", 2)
        ]
        lines = page.locator("#detail-classes tbody tr")
        assert lines.count() == 10
        for i in range(10):
            name, acc, n = lines.nth(i).locator("th, td").all_inner_texts()
            accs = [r["metrics"]["per_class_accuracy"][name] for r in records]
            assert float(acc) == pytest.approx(sum(accs) / len(accs), abs=0.006) and n == "2"
        prov = page.locator("#provenance details").first
        prov.locator("summary").click()
        fingerprint = records[0]["dataset"]["fingerprint"]["sha256"]
        assert fingerprint in page.locator("#provenance").inner_text()
        assert f"sarfewshot board {tmp_path / 'mstar'}" in page.locator("#command").inner_text()
        assert watch.requests == [] and watch.errors == [] and watch.dialogs == []
    finally:
        page.context.close()
