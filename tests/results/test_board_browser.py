"""The board page in headless Chromium: offline, sorting, filters, details, escaping, widths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sarfewshot.results.board_page import write_board
from tests.results.boardkit import EVIL, board_records
from tests.results.browser import launch, open_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    yield from launch()


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return board_records()


@pytest.fixture(scope="module")
def site(tmp_path_factory, records) -> Path:
    out = tmp_path_factory.mktemp("site")
    return write_board(records, out, command=f"sarfewshot board runs --out {out}")


@pytest.fixture()
def opened(browser, site):
    page, watch = open_page(browser, site)
    yield page, watch
    page.context.close()


def _visible_rows(page) -> list[tuple[str, str]]:
    rows = page.locator("#board-table tbody tr:visible")
    return [
        (rows.nth(i).get_attribute("data-backbone"), rows.nth(i).get_attribute("data-protocol"))
        for i in range(rows.count())
    ]


def _column_values(page, col: int) -> list[float | None]:
    cells = page.locator(f"#board-table tbody tr:visible > :nth-child({col + 1})")
    return [float(v) if v else None for v in cells.evaluate_all("cs => cs.map(c => c.dataset.v)")]


def test_offline_no_request_no_console_error(opened):
    page, watch = opened
    assert page.locator("#board-table tbody tr").count() == 6
    assert page.locator("#curve-panels figure").count() == 2
    assert page.locator("#curve-panels svg path").count() >= 6  # a line per backbone and panel
    page.locator("#comparisons").scroll_into_view_if_needed()
    assert watch.requests == [] and watch.errors == [] and watch.dialogs == []


def test_sorting_by_a_column_follows_the_numbers(opened):
    page, watch = opened
    before = _visible_rows(page)
    header = page.locator('#board-table thead th[data-shots="5"] button')
    header.click()  # best first
    values = _column_values(page, 3)
    assert values == sorted(values, reverse=True)
    after = _visible_rows(page)
    assert after != before and sorted(after) == sorted(before)
    assert (
        page.locator('#board-table thead th[data-shots="5"]').get_attribute("aria-sort")
        == "descending"
    )
    header.focus()
    page.keyboard.press("Enter")  # the same control from the keyboard: ascending
    assert _column_values(page, 3) == sorted(values)
    assert watch.errors == []


def test_filters_show_the_chosen_rows_and_columns(opened, records):
    page, _ = opened
    page.select_option("#filter-protocol", "knn")
    assert sorted(_visible_rows(page)) == sorted((b, "knn") for b in ("random", "sarjepa", EVIL))
    page.select_option("#filter-backbone", "sarjepa")
    assert _visible_rows(page) == [("sarjepa", "knn")]
    page.select_option("#filter-shots", "5")
    shown = page.locator("#board-table thead th[data-shots]:visible")
    assert shown.count() == 1 and shown.inner_text().startswith("K=5")
    assert page.locator("#visible-count").inner_text() == "1 of 6 rows shown"
    page.locator("#filter-reset").focus()
    page.keyboard.press("Enter")
    from playwright.sync_api import expect  # installed: the browser fixture found it

    expect(page.locator("#board-table tbody tr.hidden")).to_have_count(0)
    assert len(_visible_rows(page)) == 6


def test_cell_detail_matches_the_records(opened, records):
    page, _ = opened
    row = page.locator('#board-table tbody tr[data-backbone="random"][data-protocol="linear"]')
    row.locator('td[data-shots="5"] button.cell').click()
    assert page.locator("#detail").is_visible()
    assert page.locator("#detail-title").inner_text() == "random · linear · mstar · K=5"
    mine = [
        r
        for r in records
        if (r["key"]["backbone"], r["protocol"], r["shots"]) == ("random", "linear", 5)
    ]
    lines = page.locator("#detail-classes tbody tr")
    assert lines.count() == 3
    for i in range(3):
        name, acc, n = lines.nth(i).locator("th, td").all_inner_texts()
        want = sum(r["metrics"]["per_class_accuracy"][name] for r in mine) / len(mine)
        assert float(acc) == pytest.approx(want, abs=0.006) and n == "3"
    seeds = page.locator("#detail-seeds tbody tr th").all_inner_texts()
    assert seeds == ["1", "2", "3"]
    assert page.locator("#detail-confusion tbody tr").count() == 3
    page.keyboard.press("Escape")
    assert not page.locator("#detail").is_visible()


def test_keyboard_alone_opens_and_closes_a_detail(opened):
    page, _ = opened
    button = page.locator('#board-table tbody tr[data-backbone="sarjepa"] button.cell').first
    button.focus()
    page.keyboard.press("Enter")
    assert page.locator("#detail").is_visible()
    assert page.evaluate("document.activeElement.id") == "detail"
    page.keyboard.press("Escape")
    assert not page.locator("#detail").is_visible()
    assert page.evaluate("document.activeElement.dataset.detail") == button.get_attribute(
        "data-detail"
    )


def test_reference_menu_switches_the_comparisons(opened):
    page, _ = opened
    shown = page.locator("div.cmp:visible")
    assert shown.count() == 1 and shown.get_attribute("data-reference") == EVIL
    page.select_option("#reference", "sarjepa")
    assert shown.count() == 1 and shown.get_attribute("data-reference") == "sarjepa"
    assert "Holm" in page.locator("#comparisons").inner_text()
    captions = shown.locator("caption").all_inner_texts()
    assert captions == [f"{EVIL} − sarjepa", "random − sarjepa"]


def test_hostile_backbone_name_is_text(opened):
    page, watch = opened
    label = page.locator(f'#board-table tbody tr[data-backbone="{EVIL}"] th a').first
    assert label.inner_text() == EVIL
    assert page.locator("#board-table script").count() == 0
    row = page.locator(f'#board-table tbody tr[data-backbone="{EVIL}"]').first
    row.locator("button.cell").first.click()
    assert page.locator("#detail-title").inner_text().startswith(EVIL)
    assert EVIL in page.locator("#curve-panels .legend").first.inner_text()
    assert watch.dialogs == [] and watch.errors == []


@pytest.mark.parametrize("width,height", [(1280, 800), (420, 900)])
def test_screenshots_at_two_widths(browser, site, tmp_path, width, height):
    page, watch = open_page(browser, site, width, height)
    shot = tmp_path / f"board_{width}.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    # the page never scrolls sideways: wide tables scroll inside their own box
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    assert watch.errors == [] and watch.requests == []
    page.context.close()


def test_conditions_add_columns_and_the_robustness_table(browser, records, tmp_path):
    by_cond = []  # the linear cells, as `eval --conditions` keys them
    for rec in records:
        if rec["status"] == "ok" and rec["protocol"] == "linear":
            for cond, loss in (("id", 0.0), ("speckle", 10.0)):
                copy = json.loads(json.dumps(rec))
                dataset = copy["key"]["dataset"]
                copy["key"].update(setting=dataset, condition=cond, dataset=f"{dataset}:{cond}")
                copy["metrics"]["accuracy"] -= loss
                by_cond.append(copy)
    page_path = write_board(by_cond, tmp_path, references=[])
    page, watch = open_page(browser, page_path)
    try:
        groups = page.locator("#board-table thead th.cond")
        assert groups.all_inner_texts() == ["in-distribution", "speckle"]
        page.select_option("#filter-shots", "5")
        assert [groups.nth(i).get_attribute("colspan") for i in range(2)] == ["1", "1"]
        table = page.locator("#robustness-table")
        assert table.is_visible()
        line = table.locator("tbody tr").filter(has_text="sarjepa").first
        assert line.locator("td.drop").first.inner_text().startswith("+10.00")
        assert watch.errors == [] and watch.requests == []
    finally:
        page.context.close()
