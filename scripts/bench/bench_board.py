"""The board page at scale: build time, file size and time to first paint in headless Chromium.

Generates N synthetic records (seeded; several backbones, datasets, protocols, K and seeds, 10
classes with confusion matrices), writes the page with ``write_board``, opens it from file:// in
the system Chromium through playwright and reads the browser's own paint and load timings. It
measures the alternative the page did not take too: the same shot curves as matplotlib SVG
inlined in the page (drawn here, swapped into a copy of the page), so both are timed the same way.

Usage:
    python scripts/bench/bench_board.py [--records 10000] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from sarfewshot.results.board import build_board
from sarfewshot.results.board_page import render_board
from sarfewshot.results.records import make_record

CLASSES = [f"class{i}" for i in range(10)]
VERSIONS = {"sarfewshot": "0.1.0", "torch": "2.4", "timm": "1.0", "numpy": "2", "python": "3.11"}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=10000, help="about this many records")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    p.add_argument("--repeats", type=int, default=3, help="page loads per variant (median)")
    return p.parse_args()


def _record(bb: int, ds: str, proto: str, k: int, seed: int, rng: np.random.Generator) -> dict:
    acc = float(np.clip(40 + 8 * np.log2(k) + 3 * bb + rng.normal(0, 2.5), 0, 100))
    n = len(CLASSES)
    per = np.clip(acc + rng.normal(0, 8, n), 0, 100)
    cmat = rng.integers(0, 5, (n, n)) + np.diag(rng.integers(20, 40, n))
    return make_record(
        backbone={"name": f"backbone{bb}", "weights": f"weights/b{bb}.pth",
                  "weights_sha256": f"{bb:064x}", "precision": "fp32"},
        dataset={"name": ds, "classnames": CLASSES, "fingerprint": {"sha256": "f" * 64}},
        split={"path": f"splits/{ds}_k{k}_s{seed}.json", "sha256": f"{ds}-{k}-{seed}"},
        protocol=proto, shots=k, seed=seed, config={"OPTIM": {"LR": 0.001}},
        metrics={"accuracy": acc, "macro_f1": acc - 1,
                 "per_class_accuracy": dict(zip(CLASSES, per.round(2).tolist())),
                 "confusion_matrix": cmat.tolist()},
        timings={"total_s": 1.0}, versions=VERSIONS, host="node1",
        created="2025-01-01T00:00:00+00:00", extra={"execution": {"executor": "batched"}},
    )  # fmt: skip


def synthetic_records(n: int) -> list[dict]:
    """About ``n`` records: 10 backbones x 4 datasets x 5 protocols x 5 K x seeds."""
    rng = np.random.default_rng(0)
    datasets = ["mstar", "fusar", "sar_acd", "opensarship"]
    protocols = ["linear", "knn", "prototype", "logreg", "finetune"]
    shots = [1, 5, 10, 20, 40]
    seeds = max(1, round(n / (10 * len(datasets) * len(protocols) * len(shots))))
    return [
        _record(bb, ds, proto, k, seed, rng)
        for bb in range(10)
        for ds in datasets
        for proto in protocols
        for k in shots
        for seed in range(1, seeds + 1)
    ]


def matplotlib_svgs(board: dict) -> list[str]:
    """The page's shot curves drawn by matplotlib as SVG text (the road not taken)."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    out = []
    for panel in board["curves"]:
        fig = Figure(figsize=(4.5, 3.0))
        FigureCanvasSVG(fig)
        ax = fig.add_subplot(1, 1, 1)
        for i, s in enumerate(panel["series"]):
            ks = [p["k"] for p in s["points"]]
            ax.plot(ks, [p["mean"] for p in s["points"]], marker="osd^v<>"[i % 7], label=s["label"])
            lows = [p["low"] if p["low"] is not None else p["mean"] for p in s["points"]]
            highs = [p["high"] if p["high"] is not None else p["mean"] for p in s["points"]]
            ax.fill_between(ks, lows, highs, alpha=0.15)
        ax.legend(fontsize="x-small")
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        out.append(buf.getvalue().split("<svg", 1)[1].join(["<svg", ""]))
    return out


def with_static_svgs(page: str, svgs: list[str]) -> str:
    """A copy of the page whose script draws no curves and whose panel holds the SVGs."""
    page = page.replace("CURVES.forEach(function (p) { panels.appendChild(drawPanel(p)); });", "")
    figures = "".join(f"<figure>{s}</figure>" for s in svgs)
    return page.replace('<div id="curve-panels" class="panels"></div>',
                        f'<div id="curve-panels" class="panels">{figures}</div>')  # fmt: skip


def paint_times(chromium: str, path: Path, repeats: int) -> dict[str, float]:
    """Median first-contentful-paint and load-event-end (ms) over ``repeats`` fresh loads."""
    from playwright.sync_api import sync_playwright

    fcp, load = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium)
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(path.as_uri(), wait_until="load")
            times = page.evaluate(
                "() => ({fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime,"
                " load: performance.getEntriesByType('navigation')[0].loadEventEnd})"
            )
            fcp.append(times["fcp"])
            load.append(times["load"])
            page.close()
        browser.close()
    return {"fcp_ms": float(np.median(fcp)), "load_ms": float(np.median(load))}


def main() -> None:
    """Build, write and time both variants; print one JSON line of figures."""
    args = parse_args()
    records = synthetic_records(args.records)
    start = time.perf_counter()
    board = build_board(records, command="sarfewshot board runs --out site")
    html = render_board(board)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    svgs = matplotlib_svgs(board)
    mpl_s = time.perf_counter() - start
    static = with_static_svgs(html, svgs)
    tmp = Path(tempfile.mkdtemp())
    (tmp / "js.html").write_text(html)
    (tmp / "mpl.html").write_text(static)
    curves_json = len(json.dumps(board["curves"]))
    result = {
        "records": len(records),
        "rows": len(board["rows"]),
        "columns": len(board["columns"]),
        "panels": len(board["curves"]),
        "build_s": round(build_s, 2),
        "js_svg": {"bytes": len(html.encode()), "curves_json_bytes": curves_json,
                   **paint_times(args.chromium, tmp / "js.html", args.repeats)},
        "matplotlib_svg": {"bytes": len(static.encode()), "draw_s": round(mpl_s, 2),
                           "svg_bytes": sum(len(s.encode()) for s in svgs),
                           **paint_times(args.chromium, tmp / "mpl.html", args.repeats)},
    }  # fmt: skip
    print(json.dumps(result))
    assert not re.search(r"(src|href)=\"https?:", html)


if __name__ == "__main__":
    main()
