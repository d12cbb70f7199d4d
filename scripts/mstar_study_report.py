"""Tables of the MSTAR study, second edition (run by ``scripts/mstar_study.sh``).

Subcommands:

- ``select``: each sweep run's kNN accuracy on the validation pool, the learning rate (and
  pixel normalisation) picked per method, written to ``selection.tsv`` and the LR table;
- ``equal-time``: the MAE epochs that fit in SAR-JEPA's measured pretraining CPU time;
- ``report``: the pretraining table, the results pooled over pretraining runs (intervals that
  include the run-to-run variation), the per-run means, and the paired comparisons against the
  reference method (Holm-adjusted), as CSVs and as markdown blocks of ``docs/mstar_study.md``;
  the same comparisons with the pretraining run as the unit (``run_unit``);
- ``run-unit``: that run-unit table again from the committed ``leaderboard_runs.csv`` and
  ``results.csv`` alone (the per-seed records are not committed);
- ``plan``: the CPU budget of a run (the ``blocks`` stage's dry run).

Every markdown table is rendered from its CSV (``render``), so the committed CSVs and the doc's
tables agree by construction, and a test re-renders them from the CSVs.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sarfewshot.results.compare import adjust_pvalues, paired_compare
from sarfewshot.results.crossed import crossed_interval
from sarfewshot.results.records import iter_records
from sarfewshot.results.runcompare import run_means_row
from sarfewshot.results.runstats import RUN_TESTS, agreement
from sarfewshot.utils.io import atomic_write_text, sha256_file

PROTOCOLS = ("linear", "knn", "prototype", "finetune")
RANDOM = "random"
EQUAL_TIME = "mae_equal_time"


@dataclass(frozen=True)
class PretrainRun:
    """One pretraining run of the study: where it is and what it was asked to do."""

    path: str  # relative to the study's output folder, e.g. pretrain/sarjepa/seed0
    method: str
    arm: str  # what the tables call it: the method, or mae_equal_time
    seed: int
    lr: float
    norm_pix: bool
    epochs: int


# ----------------------------------------------------------------------------- inputs


def _config(run_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())


def find_runs(out: Path, part: str) -> dict[str, PretrainRun]:
    """The finished pretraining runs under ``out/part`` by checkpoint sha256."""
    runs = {}
    for ckpt in sorted((out / part).glob("**/checkpoint-last.pth")):
        run_dir = ckpt.parent
        if not (run_dir / "done").exists():
            continue
        cfg, rel = _config(run_dir), run_dir.relative_to(out).as_posix()
        arm = EQUAL_TIME if f"/{EQUAL_TIME}/" in f"/{rel}/" else str(cfg["METHOD"])
        runs[sha256_file(ckpt)] = PretrainRun(
            path=rel,
            method=str(cfg["METHOD"]),
            arm=arm,
            seed=int(cfg["SEED"]),
            lr=float(cfg["OPTIM"]["LR"]),
            norm_pix=bool(cfg["TARGET"]["NORM_PIX"]),
            epochs=int(cfg["OPTIM"]["EPOCHS"]),
        )
    return runs


def run_log(run_dir: Path) -> dict:
    """The last logged step of a run and the median logged throughput."""
    lines = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if x]
    if not lines:
        raise SystemExit(f"{run_dir / 'log.jsonl'}: no logged step")
    last = lines[-1]
    rates = [float(x["img_s"]) for x in lines if x.get("img_s")]
    return {**last, "img_s_median": statistics.median(rates) if rates else None}


def run_times(out: Path) -> dict[str, tuple[int, int | None]]:
    """``label -> (wall s, CPU s)`` of ``out/times.tsv``, summed over resumed pieces of a run
    (CPU None when a piece was timed by wall clock only)."""
    totals: dict[str, tuple[int, int | None]] = {}
    path = out / "times.tsv"
    for line in path.read_text().splitlines() if path.exists() else []:
        label, wall, *cpu = line.split("\t")
        old_wall, old_cpu = totals.get(label, (0, 0))
        new_cpu = None if old_cpu is None or not cpu else old_cpu + int(cpu[0])
        totals[label] = (old_wall + int(wall), new_cpu)
    return totals


def run_seconds(out: Path, rel: str, times: dict) -> tuple[float | None, float | None]:
    """``(wall s, CPU s)`` of the pretraining run in ``out/rel``.

    The trainer's own clock (the last ``log.jsonl`` line's ``wall_s`` and ``cpu_s``: the
    training loop, summed over resumed pieces, each kept step once) where the run has it; else
    ``times.tsv``'s whole-command times, which miss any piece that was killed.
    """
    last = run_log(out / rel) if (out / rel / "log.jsonl").exists() else {}
    if "cpu_s" in last:
        return float(last["wall_s"]), float(last["cpu_s"])
    wall, cpu = times.get(f"pretrain {rel}", (None, None))
    return wall, cpu


def arm_of(record: dict, runs: dict[str, PretrainRun]) -> tuple[str, str] | None:
    """``(arm, run path)`` of a record; None for weights of another study or a deleted run."""
    key = record["key"]
    if key["backbone"].startswith(RANDOM):
        return RANDOM, RANDOM
    run = runs.get(key["weights_sha256"])
    return (run.arm, run.path) if run else None


def accuracies(records, runs: dict[str, PretrainRun]) -> dict[tuple, float]:
    """``(arm, run path, protocol, K, seed) -> accuracy`` of the ok records."""
    table = {}
    for rec in records:
        where = arm_of(rec, runs)
        if rec["status"] != "ok" or where is None:
            continue
        key = rec["key"]
        cell = (*where, key["protocol"], int(key["shots"]), int(key["seed"]))
        table[cell] = float(rec["metrics"]["accuracy"])
    return table


# ----------------------------------------------------------------------------- CSV / markdown


def csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _f(text: str, digits: int = 1, sign: bool = False) -> str:
    if text in ("", None):
        return "-"
    return f"{float(text):+.{digits}f}" if sign else f"{float(text):.{digits}f}"


def _p(text: str) -> str:
    if not text:
        return "n/a"
    return "< 0.001" if float(text) < 0.001 else f"{float(text):.3f}"


# ----------------------------------------------------------------------------- select


SELECT_COLUMNS = [
    "method", "norm_pix", "lr", "val_knn_mean", "val_knn_sd", "cells", "final_loss",
    "target_var", "loss_over_var", "chosen",
]  # fmt: skip


def select_rows(out: Path, methods: list[str]) -> list[dict]:
    """One row per sweep run: its validation kNN accuracy and final loss / target variance."""
    runs = find_runs(out, "sweep")
    table = accuracies(iter_records([out / "sweep_eval"]), runs)
    rows = []
    mine = [r for r in runs.values() if r.method in methods]
    for run in sorted(mine, key=lambda r: (methods.index(r.method), r.norm_pix, r.lr)):
        accs = [acc for (_, path, *_), acc in table.items() if path == run.path]
        if not accs:
            continue
        log = run_log(out / run.path)
        loss, var = float(log["loss"]), float(log["target_var"])
        rows.append(
            {
                "method": run.method,
                "norm_pix": run.norm_pix,
                "lr": f"{run.lr:g}",
                "val_knn_mean": f"{np.mean(accs):.3f}",
                "val_knn_sd": f"{np.std(accs, ddof=1):.3f}" if len(accs) > 1 else "",
                "cells": len(accs),
                "final_loss": f"{loss:.5g}",
                "target_var": f"{var:.5g}",
                "loss_over_var": f"{loss / var:.3f}" if var else "",
                "chosen": False,
            }
        )
    for method in methods:  # the best mean; ties go to the earlier (smaller) LR
        mine = [r for r in rows if r["method"] == method]
        if mine:
            max(mine, key=lambda r: float(r["val_knn_mean"]))["chosen"] = True
    return rows


def render_selection(rows: list[dict[str, str]]) -> str:
    body = [
        [
            r["method"] + (" (norm. pixels)" if r["norm_pix"] == "True" else ""),
            r["lr"],
            f"{_f(r['val_knn_mean'])} ± {_f(r['val_knn_sd'])}",
            _f(r["loss_over_var"], 2),
            "**chosen**" if r["chosen"] == "True" else "",
        ]
        for r in rows
    ]
    header = ["method", "LR", "val. kNN acc. (%)", "loss / target var.", ""]
    return markdown(header, body)


def cmd_select(args: argparse.Namespace) -> None:
    rows = select_rows(Path(args.runs), args.methods)
    missing = [m for m in args.methods if not any(r["method"] == m for r in rows)]
    if missing:
        raise SystemExit(f"select: no evaluated sweep run of {', '.join(missing)}")
    text = csv_text(rows, SELECT_COLUMNS)
    atomic_write_text(args.csv, text)
    rows = read_csv(Path(args.csv))
    atomic_write_text(args.markdown, render_selection(rows) + "\n")
    refresh_blocks(Path(args.doc), {"lr_selection": render_selection(rows)})
    chosen = [f"{r['method']} {r['lr']} {r['norm_pix']}" for r in rows if r["chosen"] == "True"]
    atomic_write_text(args.out, "\n".join(chosen) + "\n")
    print(render_selection(rows))


# ----------------------------------------------------------------------------- equal time


def cmd_equal_time(args: argparse.Namespace) -> None:
    out = Path(args.runs)
    times = run_times(out)
    ref, mae = (
        run_seconds(out, f"pretrain/{m}/seed{args.seed}", times)[1] for m in ("sarjepa", "mae")
    )
    if not ref or not mae:
        raise SystemExit(f"equal-time: no CPU time of sarjepa and mae seed {args.seed} yet")
    print(max(1, round(args.epochs * ref / mae)))


# ----------------------------------------------------------------------------- check


CHECK_COLUMNS = ["method", "lr", "norm_pix", "cells", "val_10", "val_full", "test_10", "test_full"]


def _chosen(out: Path, runs: dict[str, PretrainRun], method: str) -> PretrainRun | None:
    """The sweep run that ``selection.tsv`` chose for ``method`` (None: no selection yet)."""
    path = out / "selection.tsv"
    for line in path.read_text().splitlines() if path.exists() else []:
        m, lr, norm_pix = line.split()
        if m == method:
            want = (m, float(lr), norm_pix == "True")
            return next((r for r in runs.values() if (r.method, r.lr, r.norm_pix) == want), None)
    return None


def _mean_where(table: dict[tuple, float], field: int, value: str) -> str:
    """The mean accuracy of the cells whose key has ``value`` at ``field`` ('' if none)."""
    accs = [acc for cell, acc in table.items() if cell[field] == value]
    return f"{np.mean(accs):.3f}" if accs else ""


def check_rows(
    out: Path, methods: list[str], full: dict[str, PretrainRun], test_full: dict[tuple, float]
) -> list[dict]:
    """Per method: the selection's kNN cells on the validation pool and on TEST, for the chosen
    sweep run and for the full runs ``full`` (mean over runs; ``test_full``: their TEST cells),
    scored after the choice was made."""
    sweep = find_runs(out, "sweep")
    tables = {
        "val_10": accuracies(iter_records([out / "sweep_eval"]), sweep),
        "test_10": accuracies(iter_records([out / "check_test"]), sweep),
        "val_full": accuracies(iter_records([out / "check_val"]), full),
    }
    cells = {(k, seed) for (*_, k, seed) in tables["val_10"]}  # the selection's K x seeds
    tables["test_full"] = {c: a for c, a in test_full.items() if c[2] == "knn" and c[3:] in cells}
    rows = []
    for method in methods:
        chosen = _chosen(out, sweep, method)
        if chosen is None:
            continue
        row = {"method": method, "lr": f"{chosen.lr:g}", "norm_pix": chosen.norm_pix}
        row["cells"] = len(cells)
        for name in ("val_10", "test_10"):
            row[name] = _mean_where(tables[name], 1, chosen.path)
        for name in ("val_full", "test_full"):  # the method's own runs, not the equal-time one
            row[name] = _mean_where(tables[name], 0, method)
        rows.append(row)
    return rows


def render_check(rows: list[dict[str, str]]) -> str:
    body = [
        [
            r["method"] + (" (norm. pixels)" if r["norm_pix"] == "True" else ""),
            r["lr"],
            *(_f(r[c]) if r[c] else "-" for c in ("val_10", "val_full", "test_10", "test_full")),
        ]
        for r in rows
    ]
    header = ["method", "LR", "val., sweep run", "val., full runs", "TEST, sweep run"]
    return markdown([*header, "TEST, full runs"], body)


# ----------------------------------------------------------------------------- report


PRETRAIN_COLUMNS = [
    "run", "method", "seed", "lr", "norm_pix", "epochs", "steps", "images_seen", "wall_s",
    "cpu_s", "img_s_median", "final_loss", "target_var", "loss_over_var",
]  # fmt: skip
RESULT_COLUMNS = ["protocol", "shots", "backbone", "runs", "seeds", "mean", "ci95", "df"]
RESULT_COLUMNS += ["run_means"]
GROUP_FIELDS = [
    "protocol", "shots", "n", "mean_diff", "ci_low", "ci_high", "p_t", "p_t_adj", "p_wilcoxon",
    "p_wilcoxon_adj",
]  # fmt: skip
COMPARE_COLUMNS = ["b", *GROUP_FIELDS, "adjust", "run_pairs", "run_pairs_agree", "p_agree"]
RUN_UNIT_COLUMNS = [
    "b", "protocol", "shots", "runs_a", "runs_b", "mean_diff", "ci_low", "ci_high", "df", "p",
    "p_adj", "adjust", "family_size", "mdd80", "run_pairs", "run_pairs_agree", "p_agree", "test",
]  # fmt: skip


def pretrain_rows(out: Path, runs: dict[str, PretrainRun]) -> list[dict]:
    times = run_times(out)
    rows = []
    for run in sorted(runs.values(), key=lambda r: r.path):
        log, cfg = run_log(out / run.path), _config(out / run.path)
        wall, cpu = run_seconds(out, run.path, times)
        steps, loss, var = int(log["step"]), float(log["loss"]), float(log["target_var"])
        rows.append(
            {
                "run": run.path,
                "method": run.arm,
                "seed": run.seed,
                "lr": f"{run.lr:g}",
                "norm_pix": run.norm_pix,
                "epochs": run.epochs,
                "steps": steps,
                "images_seen": steps * int(cfg["DATA"]["BATCH_SIZE"]),
                "wall_s": "" if wall is None else f"{wall:.0f}",
                "cpu_s": "" if cpu is None else f"{cpu:.0f}",
                "img_s_median": f"{log['img_s_median']:.0f}" if log["img_s_median"] else "",
                "final_loss": f"{loss:.5g}",
                "target_var": f"{var:.5g}",
                "loss_over_var": f"{loss / var:.3f}" if var else "",
            }
        )
    return rows


def _grid(table: dict[tuple, float], arm: str, protocol: str, shots: int) -> dict[str, dict]:
    """``run path -> {seed: accuracy}`` of one arm's cells in one (protocol, K)."""
    out: dict[str, dict] = {}
    for (a, path, proto, k, seed), acc in table.items():
        if (a, proto, k) == (arm, protocol, shots):
            out.setdefault(path, {})[seed] = acc
    return out


def result_rows(table: dict[tuple, float], arms: list[str]) -> list[dict]:
    """Per (protocol, K, arm): the mean over runs x seeds and its crossed interval."""
    rows = []
    for protocol in [p for p in PROTOCOLS if any(c[2] == p for c in table)]:
        for shots in sorted({c[3] for c in table if c[2] == protocol}):
            for arm in arms:
                grid = _grid(table, arm, protocol, shots)
                seeds = sorted(set.intersection(*(set(s) for s in grid.values()))) if grid else []
                if not seeds:
                    continue
                paths = sorted(grid)
                c = crossed_interval([[grid[p][s] for s in seeds] for p in paths])
                rows.append(
                    {
                        "protocol": protocol,
                        "shots": shots,
                        "backbone": arm,
                        "runs": c.runs,
                        "seeds": c.seeds,
                        "mean": f"{c.mean:.3f}",
                        "ci95": "" if c.ci95 is None else f"{c.ci95:.3f}",
                        "df": "" if c.df is None else f"{c.df:.2f}",
                        "run_means": ";".join(f"{m:.3f}" for m in c.run_means),
                    }
                )
    return rows


def render_results(rows: list[dict[str, str]]) -> str:
    shots = sorted({int(r["shots"]) for r in rows})
    cells = {(r["protocol"], r["backbone"], int(r["shots"])): r for r in rows}
    body = []
    for protocol in [p for p in PROTOCOLS if any(r["protocol"] == p for r in rows)]:
        arms = list(dict.fromkeys(r["backbone"] for r in rows if r["protocol"] == protocol))
        last = shots[-1]
        arms.sort(key=lambda a: -float(cells.get((protocol, a, last), {"mean": 0})["mean"]))
        for arm in arms:
            out = []
            for k in shots:
                r = cells.get((protocol, arm, k))
                out.append(f"{_f(r['mean'])} [±{_f(r['ci95'])}]" if r else "-")
            # a partial grid may lack the last K; the arm's run count is the same at every K
            runs = next(r["runs"] for k in reversed(shots) if (r := cells.get((protocol, arm, k))))
            body.append([protocol, f"{arm} ({runs} run{'s' if runs != '1' else ''})", *out])
    return markdown(["protocol", "backbone", *[f"K={k}" for k in shots]], body)


def render_spread(rows: list[dict[str, str]]) -> str:
    """Per (protocol, method) with several runs: each run's mean and the gap, per K."""
    shots = sorted({int(r["shots"]) for r in rows})
    cells = {(r["protocol"], r["backbone"], int(r["shots"])): r for r in rows}
    body = []
    for protocol, arm in dict.fromkeys((r["protocol"], r["backbone"]) for r in rows):
        mine = [cells.get((protocol, arm, k)) for k in shots]  # None: a partial grid's gap
        if all(r is None or int(r["runs"]) < 2 for r in mine):
            continue
        out = []
        for r in mine:
            means = [float(m) for m in r["run_means"].split(";")] if r else []
            gap = f" ({max(means) - min(means):.1f})" if len(means) > 1 else ""
            out.append(" / ".join(f"{m:.1f}" for m in means) + gap if means else "-")
        body.append([protocol, arm, *out])
    return markdown(["protocol", "method", *[f"K={k}" for k in shots]], body)


def _run_pairs(table, a: str, b: str, protocol: str, shots: int, sign: float) -> tuple[int, int]:
    """How many (run of a, run of b) pairings give a mean difference of the pooled sign."""
    ga, gb = _grid(table, a, protocol, shots), _grid(table, b, protocol, shots)
    agree = total = 0
    for sa in ga.values():
        for sb in gb.values():
            seeds = sorted(set(sa) & set(sb))
            if seeds:
                total += 1
                agree += int(np.sign(np.mean([sa[s] - sb[s] for s in seeds])) == np.sign(sign))
    return agree, total


def run_means(table: dict[tuple, float]) -> dict[tuple, list[float]]:
    """``(arm, protocol, K) -> [mean over the seeds of each run]``, runs in path order, over the
    seeds every run of the arm has (those of ``results.csv``)."""
    out = {}
    for arm, protocol, shots in sorted({(c[0], c[2], c[3]) for c in table}):
        grid = _grid(table, arm, protocol, shots)
        seeds = set.intersection(*(set(v) for v in grid.values()))
        if seeds:
            out[(arm, protocol, shots)] = [
                float(np.mean([grid[p][s] for s in sorted(seeds)])) for p in sorted(grid)
            ]
    return out


def run_unit_rows(
    means: dict[tuple, list[float]], ref: str, others: list[str], adjust: str
) -> list[dict]:
    """``ref`` minus each other arm with the pretraining run as the unit: the t-test on run
    means per (protocol, K), adjusted over that comparison's groups (as the pooled table)."""
    rows = []
    for b in others:
        groups = [
            (p, k)
            for p in PROTOCOLS
            for k in sorted({k for (arm, q, k) in means if arm == ref and q == p})
            if (ref, p, k) in means and (b, p, k) in means
        ]
        stats = [run_means_row(means[(ref, p, k)], means[(b, p, k)]) for p, k in groups]
        for (p, k), st, p_adj in zip(
            groups, stats, adjust_pvalues([x["p"] for x in stats], adjust)
        ):
            row = {c: st.get(c) for c in RUN_UNIT_COLUMNS if c in st}
            rows.append(
                {
                    **row,
                    "b": b,
                    "protocol": p,
                    "shots": k,
                    "p_adj": p_adj,
                    "adjust": adjust,
                    "family_size": len(groups),
                    "test": RUN_TESTS["means"],
                }
            )
    return rows


def compare_rows(records, runs, table, ref: str, others: list[str], adjust: str) -> list[dict]:
    """``ref`` minus each other arm, pooled over pretraining runs, paired over support sets."""
    rows = []
    for b in others:
        mine = [r for r in records if (where := arm_of(r, runs)) and where[0] in (ref, b)]
        missing = {ref, b} - {arm_of(r, runs)[0] for r in mine}
        if missing:
            print(
                f"compare: no records of {', '.join(sorted(missing))}; {ref} vs {b} left out",
                file=sys.stderr,
            )
            continue
        name_b = RANDOM if b == RANDOM else ("mae" if b == EQUAL_TIME else b)
        # the arm's records only, so mae and its equal-time run never pool together
        res = paired_compare(mine, ref, _label(mine, name_b), adjust=adjust, pool=True)
        means = run_means(table)
        for g in res["groups"]:
            agree, total = _run_pairs(table, ref, b, g["protocol"], g["shots"], g["mean_diff"])
            ma, mb = means[(ref, g["protocol"], g["shots"])], means[(b, g["protocol"], g["shots"])]
            rows.append(
                {
                    "b": b,
                    **{c: g.get(c) for c in GROUP_FIELDS},
                    "adjust": res["adjust"],
                    "run_pairs": total,
                    "run_pairs_agree": agree,
                    "p_agree": agreement(ma, mb)["p"],
                }
            )
    return rows


def _label(records: list[dict], name: str) -> str:
    """The full backbone name of ``name`` in ``records`` (random's carries its arch)."""
    names = {r["key"]["backbone"] for r in records}
    return name if name in names else next(n for n in sorted(names) if n.startswith(name))


def _arm_table(rows: list[dict[str, str]], ref: str, cell, label=lambda b, first: b) -> str:
    """``ref`` minus each arm: one line per (arm, protocol), one ``cell(row)`` per K."""
    shots = sorted({int(r["shots"]) for r in rows})
    groups = {(r["b"], r["protocol"], int(r["shots"])): r for r in rows}
    body = []
    for b in dict.fromkeys(r["b"] for r in rows):
        for protocol in [p for p in PROTOCOLS if (b, p, shots[0]) in groups]:
            cells = [cell(groups.get((b, protocol, k))) for k in shots]
            body.append([label(b, groups[(b, protocol, shots[0])]), protocol, *cells])
    return markdown([f"{ref} minus", "protocol", *[f"K={k}" for k in shots]], body)


def render_compare(rows: list[dict[str, str]], ref: str) -> str:
    return _arm_table(rows, ref, _cmp_cell)


def _interval_cell(r: dict[str, str], p_adj: str) -> str:
    """``diff [low, high]``, in bold where the adjusted p (column ``p_adj``) is below 0.05."""
    mark = "**" if r[p_adj] and float(r[p_adj]) < 0.05 else ""
    interval = f"{_f(r['mean_diff'], sign=True)} [{_f(r['ci_low'], sign=True)}, "
    return f"{mark}{interval}{_f(r['ci_high'], sign=True)}]{mark}"


def _cmp_cell(r: dict[str, str] | None) -> str:
    if r is None:
        return "-"
    agree = f"{r['run_pairs_agree']}/{r['run_pairs']}"
    agree += f" (P {float(r['p_agree']):.2f})" if r.get("p_agree") else ""
    return f"{_interval_cell(r, 'p_t_adj')}, p {_p(r['p_t_adj'])}, {agree}"


def render_run_unit(rows: list[dict[str, str]], ref: str) -> str:
    return _arm_table(
        rows, ref, _run_unit_cell, lambda b, r: f"{b} ({r['runs_a']}x{r['runs_b']} runs)"
    )


def _run_unit_cell(r: dict[str, str] | None) -> str:
    if r is None:
        return "-"
    return f"{_interval_cell(r, 'p_adj')}, p {_p(r['p'])} / {_p(r['p_adj'])}, MDD {_f(r['mdd80'])}"


def render_pretrain(rows: list[dict[str, str]]) -> str:
    body = [
        [
            r["run"].removeprefix("pretrain/"),
            r["lr"] + (", norm. pixels" if r["norm_pix"] == "True" else ""),
            r["epochs"],
            f"{int(r['images_seen']):,}",
            f"{r['wall_s']} s" if r["wall_s"] else "-",
            f"{r['cpu_s']} s" if r["cpu_s"] else "-",
            r["img_s_median"] or "-",
            f"{r['final_loss']} / {r['target_var']} ({r['loss_over_var']})",
        ]
        for r in rows
    ]
    header = ["run", "LR", "epochs", "images seen", "wall", "CPU", "images/s", "loss / var."]
    return markdown(header, body)


def render_neighbours(rows: list[dict[str, str]]) -> str:
    body = [
        [
            r["rule"],
            r["seeds"],
            r["pool_chips"],
            f"{r['median']} [{r['q10']}, {r['q90']}]",
            f"{100 * float(r['share_0.8']):.1f} %",
            f"{100 * float(r['share_0.9']):.1f} %",
        ]
        for r in rows
    ]
    header = ["rule", "split seeds", "pool chips", "median [10 %, 90 %]", "> 0.8", "> 0.9"]
    return markdown(header, body)


def render_order(rows: list[dict[str, str]]) -> str:
    body = [
        [
            r["measure"],
            *(f"{100 * float(r[k]):.1f} %" for k in ("within_1", "within_5", "within_10")),
        ]
        + [r["median_distance"]]
        for r in rows
    ]
    header = ["order", "within 1", "within 5", "within 10", "median distance"]
    return markdown(header, body)


RENDERERS = {
    "val_pool_neighbours": render_neighbours,
    "val_pool_order": render_order,
    "lr_selection": render_selection,
    "pretraining": render_pretrain,
    "results": render_results,
    "pretrain_seed_spread": render_spread,
    "selection_check": render_check,
}


def render(name: str, rows: list[dict[str, str]], ref: str = "sarjepa") -> str:
    """The markdown of a committed CSV's rows (``pretrain_seed_spread``: of ``results.csv``)."""
    if name == "comparisons":
        return render_compare(rows, ref)
    if name == "run_unit":
        return render_run_unit(rows, ref)
    return RENDERERS[name](rows)


def replace_block(doc: str, name: str, table: str) -> str:
    """``doc`` with the text between ``<!-- study:name -->`` and ``<!-- /study:name -->``
    replaced by ``table`` (an empty block too); a doc without the markers comes back unchanged."""
    pattern = re.compile(rf"(<!-- study:{name} -->\n)(?:.*?\n)?(<!-- /study:{name} -->)", re.S)
    return pattern.sub(lambda m: m[1] + table + "\n" + m[2], doc)


def refresh_blocks(doc_path: Path, tables: dict[str, str]) -> None:
    """Replace the ``<!-- study:NAME -->`` blocks of ``doc_path`` (if it exists) by ``tables``."""
    if not doc_path.exists():
        return
    doc = doc_path.read_text()
    for name, table in tables.items():
        doc = replace_block(doc, name, table)
    atomic_write_text(doc_path, doc)


def cmd_report(args: argparse.Namespace) -> None:
    out, docs = Path(args.runs), Path(args.docs)
    runs = find_runs(out, "pretrain")
    records = list(iter_records([out / "eval"]))
    table = accuracies(records, runs)
    arms = [args.reference, *[m for m in args.methods if m != args.reference]]
    arms += [a for a in (EQUAL_TIME, RANDOM) if any(c[0] == a for c in table)]
    tables = {
        "pretraining": (pretrain_rows(out, runs), PRETRAIN_COLUMNS),
        "results": (result_rows(table, arms), RESULT_COLUMNS),
        "selection_check": (check_rows(out, args.methods, runs, table), CHECK_COLUMNS),
        "comparisons": (
            compare_rows(records, runs, table, args.reference, arms[1:], args.adjust),
            COMPARE_COLUMNS,
        ),
        "run_unit": (
            run_unit_rows(run_means(table), args.reference, arms[1:], args.adjust),
            RUN_UNIT_COLUMNS,
        ),
    }
    for name, (rows, columns) in tables.items():
        atomic_write_text(docs / f"{name}.csv", csv_text(rows, columns))
    blocks = {}
    for name in [*tables, "pretrain_seed_spread"]:
        source = "results" if name == "pretrain_seed_spread" else name
        blocks[name] = render(name, read_csv(docs / f"{source}.csv"), args.reference)
        atomic_write_text(docs / f"{name}.md", blocks[name] + "\n")
        print(f"## {name}\n\n{blocks[name]}\n")
    selection = docs / "lr_selection.csv"
    if selection.exists():
        blocks["lr_selection"] = render("lr_selection", read_csv(selection))
    refresh_blocks(Path(args.doc), blocks)


def committed_run_means(leaderboard: Path, results: Path) -> dict[tuple, list[float]]:
    """:func:`run_means` rebuilt from the committed CSVs (the per-seed records are not).

    ``leaderboard`` (one row per backbone, weights file, protocol and K) gives each run's mean
    over the seeds at full precision but not its arm (``mae`` and ``mae_equal_time`` share a
    name); ``results`` gives each arm's run means to 3 decimals in run order. A weights file
    belongs to the one (arm, run) whose means it matches in every (protocol, K).

    Raises:
        SystemExit: a weights file that matches no run, or several.
    """
    arm_runs = {
        (r["backbone"], r["protocol"], int(r["shots"])): [
            float(x) for x in r["run_means"].split(";")
        ]
        for r in read_csv(results)
    }
    cells: dict[tuple, dict] = {}
    for r in read_csv(leaderboard):
        key = (r["backbone"], r["weights_sha256"])
        cells.setdefault(key, {})[(r["protocol"], int(r["shots"]))] = float(r["acc_mean"])
    slots = {(arm, i) for (arm, _, _), ms in arm_runs.items() for i in range(len(ms))}
    means: dict[tuple, dict[int, float]] = {}
    for key, accs in sorted(cells.items()):
        hits = [
            (arm, i)
            for arm, i in sorted(slots)
            if all(
                (arm, p, k) in arm_runs and abs(arm_runs[(arm, p, k)][i] - acc) <= 6e-4
                for (p, k), acc in accs.items()
            )
        ]
        if len(hits) != 1:
            raise SystemExit(f"{leaderboard}: {key[0]} {key[1][:12]} matches runs {hits}")
        arm, i = hits[0]
        for (p, k), acc in accs.items():
            means.setdefault((arm, p, k), {})[i] = acc
    return {key: [by_run[i] for i in sorted(by_run)] for key, by_run in sorted(means.items())}


def cmd_run_unit(args: argparse.Namespace) -> None:
    docs = Path(args.docs)
    means = committed_run_means(docs / "leaderboard_runs.csv", docs / "results.csv")
    # the pooled comparisons' order, so that the two tables read side by side
    others = list(dict.fromkeys(r["b"] for r in read_csv(docs / "comparisons.csv")))
    rows = run_unit_rows(means, args.reference, others, args.adjust)
    atomic_write_text(docs / "run_unit.csv", csv_text(rows, RUN_UNIT_COLUMNS))
    block = render("run_unit", read_csv(docs / "run_unit.csv"), args.reference)
    atomic_write_text(docs / "run_unit.md", block + "\n")
    refresh_blocks(Path(args.doc), {"run_unit": block})
    print(block)


def plan_rows(args: argparse.Namespace) -> list[dict]:
    """The CPU budget of a study run: pretraining from the measured CPU seconds per epoch of the
    committed pretraining table (scaled to the images left after the exclusion), evaluation
    from the per-backbone figures given (assumptions, printed as such)."""
    per_epoch: dict[str, list[float]] = {}
    for r in read_csv(Path(args.pretraining)):
        if r["method"] in args.methods and r["run"].split("/")[1] == r["method"]:
            per_epoch.setdefault(r["method"], []).append(float(r["cpu_s"]) / int(r["epochs"]))
    missing = set(args.methods) - set(per_epoch)
    if missing:
        raise SystemExit(f"{args.pretraining}: no measured run of {', '.join(sorted(missing))}")
    scale = 1.0 - args.excluded
    cost = {m: statistics.mean(v) * scale for m, v in per_epoch.items()}
    sweep_runs = {m: len(args.lrs) * (2 if m in args.norm_pix_methods else 1) for m in cost}
    n_sweep = sum(sweep_runs.values())
    full = len(args.methods) * len(args.seeds)
    rows = [
        ("sweep", n_sweep, sum(n * args.sweep_epochs * cost[m] for m, n in sweep_runs.items())),
        ("select (kNN on the pool)", n_sweep, n_sweep * args.knn_cpu_s),
        ("pretrain", full, sum(args.epochs * cost[m] * len(args.seeds) for m in cost)),
        ("pretrain mae_equal_time", 1, args.epochs * cost.get("sarjepa", 0.0)),
        ("eval", full + 2, (full + 2) * args.eval_cpu_s),
        ("check (kNN)", len(cost) + full, (len(cost) + full) * args.knn_cpu_s),
    ]
    return [{"stage": s, "runs": n, "cpu_h": c / 3600} for s, n, c in rows]


def cmd_plan(args: argparse.Namespace) -> None:
    rows = plan_rows(args)
    total = sum(r["cpu_h"] for r in rows)
    body = [[r["stage"], str(r["runs"]), f"{r['cpu_h']:.1f}"] for r in rows]
    body.append(["total", "", f"{total:.1f}"])
    print(markdown(["stage", "runs", "CPU-hours"], body))
    print(
        f"\nwall time at {args.jobs} run(s) at once: about {total / args.jobs:.1f} h. Pretraining "
        f"from the measured CPU s per epoch ({args.pretraining}) x {1 - args.excluded:.2f} (the "
        f"images left after the exclusion); evaluation assumed {args.eval_cpu_s:.0f} CPU s per "
        f"backbone and {args.knn_cpu_s:.0f} per kNN check (not measured by this plan)."
    )


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("select", help="pick each method's LR on the validation pool")
    s.add_argument("--runs", required=True, help="the study's output folder")
    s.add_argument("--methods", nargs="+", required=True)
    s.add_argument("--out", required=True, help="selection.tsv to write")
    s.add_argument("--csv", required=True)
    s.add_argument("--markdown", required=True)
    s.add_argument("--doc", default="docs/mstar_study.md", help="doc whose block to refresh")
    s.set_defaults(func=cmd_select)
    e = sub.add_parser("equal-time", help="MAE epochs in SAR-JEPA's pretraining CPU time")
    e.add_argument("--runs", required=True)
    e.add_argument("--seed", type=int, required=True)
    e.add_argument("--epochs", type=int, required=True)
    e.set_defaults(func=cmd_equal_time)
    r = sub.add_parser("report", help="the CSVs and markdown tables of the doc")
    r.add_argument("--runs", required=True)
    r.add_argument("--docs", required=True, help="folder of the committed CSVs and tables")
    r.add_argument("--doc", default="docs/mstar_study.md", help="doc whose blocks to refresh")
    r.add_argument("--reference", default="sarjepa")
    r.add_argument("--methods", nargs="+", required=True)
    r.add_argument("--adjust", default="holm", choices=("holm", "bh", "none"))
    r.set_defaults(func=cmd_report)
    u = sub.add_parser(
        "run-unit", help="the run-unit comparisons from the committed CSVs (leaderboard_runs.csv)"
    )
    u.add_argument("--docs", default="docs/mstar_study", help="folder of the committed CSVs")
    u.add_argument("--doc", default="docs/mstar_study.md", help="doc whose block to refresh")
    u.add_argument("--reference", default="sarjepa")
    u.add_argument("--adjust", default="holm", choices=("holm", "bh", "none"))
    u.set_defaults(func=cmd_run_unit)
    b = sub.add_parser("plan", help="the CPU budget of a study run (the blocks stage's dry run)")
    b.add_argument("--pretraining", default="docs/mstar_study/pretraining.csv")
    b.add_argument("--methods", nargs="+", required=True)
    b.add_argument("--norm-pix-methods", nargs="*", default=[])
    b.add_argument("--lrs", nargs="+", required=True)
    b.add_argument("--sweep-epochs", type=int, required=True)
    b.add_argument("--epochs", type=int, required=True)
    b.add_argument("--seeds", nargs="+", required=True)
    b.add_argument("--excluded", type=float, default=0.2, help="share of TRAIN left out")
    b.add_argument("--eval-cpu-s", type=float, default=1000.0, help="per backbone (assumed)")
    b.add_argument("--knn-cpu-s", type=float, default=60.0, help="per kNN check (assumed)")
    b.add_argument("--jobs", type=int, default=1)
    b.set_defaults(func=cmd_plan)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
