#!/usr/bin/env bash
# Small-scale MSTAR SOC study (issue 7): pretrain tiny ViTs with several self-supervised methods on
# the TRAIN chips (no labels), evaluate them and a random-init ViT K-shot on TRAIN / all TEST
# chips, then build the leaderboard, the paired comparisons and the accuracy-vs-shots plot.
#
# usage: scripts/mstar_study.sh            (variables below; override any by environment, e.g.
#        EPOCHS=2 OUT=/tmp/smoke scripts/mstar_study.sh)
# Re-runnable: pretraining resumes from OUT/pretrain/<method>/checkpoint-last.pth (--resume) and
# is skipped when OUT/pretrain/<method>/done exists; evaluation skips finished cells.
# Wall times are appended to OUT/times.tsv. Results go to DOCS (the committed copy).
set -euo pipefail

DATA=${DATA:-../shared/data}            # holds MSTAR_SOC/TRAIN and MSTAR_SOC/TEST; never copied
OUT=${OUT:-runs/mstar_study}            # pretraining checkpoints, eval records, splits, features
DOCS=${DOCS:-docs/mstar_study}          # committed: leaderboard.csv, leaderboard.md, shots PNGs
METHODS=${METHODS:-"sarjepa lomar mae hog sar_hog"}
EPOCHS=${EPOCHS:-30}                    # pretraining epochs over the 2746 TRAIN chips
BATCH=${BATCH:-32}                      # pretraining batch (LR fixed at the tiny presets' 1e-3)
IMG=${IMG:-64}                          # pretraining and evaluation input size
PATCH=${PATCH:-8}
EMBED=${EMBED:-128}
DEPTH=${DEPTH:-4}
HEADS=${HEADS:-4}
PRED_DIM=${PRED_DIM:-64}                # predictor / MAE decoder
PRED_DEPTH=${PRED_DEPTH:-2}
PRED_HEADS=${PRED_HEADS:-2}
SEED=${SEED:-0}                         # pretraining seed
PROTOCOLS=${PROTOCOLS:-linear,knn,prototype,finetune}
SHOTS=${SHOTS:-1,5,10,20}
SEEDS=${SEEDS:-1-5}
DEVICE=${DEVICE:-cpu}
STAGES=${STAGES:-"pretrain eval report"}  # any subset, in this order

cd "$(dirname "$0")/.."
SFS=${SFS:-sarfewshot}
PY=${PY:-python}
if [ -x .venv/bin/sarfewshot ] && ! command -v sarfewshot >/dev/null; then
    SFS=.venv/bin/sarfewshot
    PY=.venv/bin/python
fi
export SARFEWSHOT_NO_PROGRESS=${SARFEWSHOT_NO_PROGRESS:-1}
mkdir -p "$OUT" "$DOCS"
IRPE_ARCH="irpe:patch=$PATCH,dim=$EMBED,depth=$DEPTH,heads=$HEADS"
VIT_ARCH="vit:patch=$PATCH,dim=$EMBED,depth=$DEPTH,heads=$HEADS"

timed() {  # timed LABEL CMD...: run CMD, append "LABEL<TAB>seconds" to OUT/times.tsv
    local label=$1 t0=$SECONDS
    shift
    echo "\$ $*"
    "$@"
    printf '%s\t%s\n' "$label" "$((SECONDS - t0))" >>"$OUT/times.tsv"
}

pretrain() {  # pretrain METHOD: the shared architecture over the tiny preset of METHOD
    local m=$1 dir="$OUT/pretrain/$1"
    if [ -f "$dir/done" ]; then echo "pretrain $m: done"; return; fi
    timed "pretrain $m" $SFS pretrain --config "configs/pretrain/${m}_tiny.yaml" \
        --data "$DATA/MSTAR_SOC/TRAIN" --output "$dir" --epochs "$EPOCHS" --batch-size "$BATCH" \
        --img-size "$IMG" --seed "$SEED" --device "$DEVICE" --resume \
        MODEL.PATCH_SIZE "$PATCH" MODEL.EMBED_DIM "$EMBED" MODEL.DEPTH "$DEPTH" \
        MODEL.NUM_HEADS "$HEADS" MODEL.PRED_DIM "$PRED_DIM" MODEL.PRED_DEPTH "$PRED_DEPTH" \
        MODEL.PRED_HEADS "$PRED_HEADS" TRAIN.LOG_EVERY 50
    touch "$dir/done"
}

evaluate() {  # evaluate NAME [WEIGHTS [ARCH]]: every protocol x K x seed cell of one backbone
    local name=$1 weights=${2:-} arch=${3:-} extra=()
    if [ -n "$weights" ]; then extra+=(--weights "$weights"); fi
    if [ -n "$arch" ]; then extra+=(--arch "$arch"); fi
    timed "eval $name" $SFS eval --backbone "$name" "${extra[@]}" \
        --dataset mstar --root "$DATA" --shots "$SHOTS" --protocol "$PROTOCOLS" \
        --seeds "$SEEDS" --img-size "$IMG" --device "$DEVICE" --output "$OUT/eval"
}

has_stage() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if has_stage pretrain; then
    for m in $METHODS; do pretrain "$m"; done
fi
if ! has_stage eval && ! has_stage report; then exit 0; fi

if has_stage eval; then
    evaluate random "" "$IRPE_ARCH"
    for m in $METHODS; do
        ckpt="$OUT/pretrain/$m/checkpoint-last.pth"
        case $m in
            mae) evaluate mae "$ckpt" "$VIT_ARCH" ;;  # plain ViT: heads are not in the weights
            *) evaluate "$m" "$ckpt" ;;  # iRPE ViTs: the geometry comes from the checkpoint
        esac
    done
fi
if ! has_stage report; then exit 0; fi

$SFS leaderboard "$OUT/eval" --csv "$DOCS/leaderboard.csv" --markdown "$DOCS/leaderboard.md" \
    --plots --plots-dir "$OUT/plots" --format github
cp "$OUT"/plots/*shots*.png "$DOCS"/ 2>/dev/null || echo "no accuracy-vs-shots PNG was written"
# Paired differences sarjepa - other over the cells both have (same split files, K and seed),
# with paired t / Wilcoxon p-values Holm-adjusted over each comparison's groups.
echo "== sarjepa vs random (paired over shared cells)"
$SFS compare "$OUT/eval" --a sarjepa --b "random@$IRPE_ARCH" --adjust holm \
    --csv "$OUT/compare_sarjepa_vs_random.csv" ||
    echo "warning: the sarjepa vs random comparison failed" >&2
for b in $METHODS; do
    if [ "$b" = sarjepa ]; then continue; fi
    echo "== sarjepa vs $b (paired over shared cells)"
    $SFS compare "$OUT/eval" --a sarjepa --b "$b" --adjust holm \
        --csv "$OUT/compare_sarjepa_vs_$b.csv" ||
        echo "warning: the sarjepa vs $b comparison failed" >&2
done
# the paired differences of every comparison in one table (appended to OUT/summary.md below);
# bold marks a Holm-adjusted paired t-test p < 0.05 over the 16 groups of that comparison
compare_summary() {
    "$PY" - "$OUT"/compare_sarjepa_vs_*.csv <<'PYEOF'
import csv
import sys
from pathlib import Path


def cell(r):
    if r is None:
        return "-"
    lo, hi, p = float(r["ci_low"]), float(r["ci_high"]), r["p_t_adj"]
    mark = "**" if p and float(p) < 0.05 else ""
    p_text = "p n/a" if not p else ("p < 0.001" if float(p) < 0.001 else f"p {float(p):.3f}")
    return f"{mark}{float(r['mean_diff']):+.1f} [{lo:+.1f}, {hi:+.1f}]{mark}, {p_text}"


print("| sarjepa minus | protocol | " + " | ".join(f"K={k}" for k in (1, 5, 10, 20)) + " |")
print("|---|---|---|---|---|---|")
overall, methods = [], set()
for path in sys.argv[1:]:
    name = Path(path).stem.replace("compare_sarjepa_vs_", "", 1)
    rows = list(csv.DictReader(open(path, newline="")))
    groups = {(r["protocol"], r["shots"]): r for r in rows if r["dataset"] != "ALL"}
    methods |= {r["p_adjust"] for r in groups.values()}
    for proto in sorted({p for p, _ in groups}):
        cells = [cell(groups.get((proto, k))) for k in ("1", "5", "10", "20")]
        print(f"| {name} | {proto} | " + " | ".join(cells) + " |")
    overall += [(name, r) for r in rows if r["dataset"] == "ALL"]
print()
print(
    "points, paired Student-t 95 % CI over the 5 seeds; p: paired t-test, adjusted with "
    f"{'/'.join(sorted(methods))} over the (protocol, K) groups of each comparison; "
    "bold: adjusted p < 0.05. Wilcoxon p-values are in the CSVs (at n = 5 never below 0.0625)."
)
print()
for name, r in overall:
    print(
        f"- sarjepa - {name}, all {r['n']} paired cells: {float(r['mean_diff']):+.2f} "
        f"[{float(r['ci_low']):+.2f}, {float(r['ci_high']):+.2f}] (pooled, not adjusted; "
        "optimistic: the cells of a seed share nested support sets)"
    )
PYEOF
}

# mean ± sample std and the Student-t 95 % CI half-width per cell, from the committed CSV
"$PY" - "$DOCS/leaderboard.csv" <<'PYEOF' | tee "$OUT/summary.md"
import csv
import sys

rows = list(csv.DictReader(open(sys.argv[1], newline="")))
shots = sorted({int(r["shots"]) for r in rows})
cells = {(r["backbone"].split("@")[0], r["protocol"], int(r["shots"])): r for r in rows}
print("| protocol | backbone | " + " | ".join(f"K={k}" for k in shots) + " |")
print("|---|---|" + "---|" * len(shots))
for proto in sorted({p for _, p, _ in cells}):
    names = sorted({b for b, p, _ in cells if p == proto})
    names.sort(key=lambda b: -float(cells.get((b, proto, shots[-1]), {"acc_mean": 0})["acc_mean"]))
    for name in names:
        out = []
        for k in shots:
            r = cells.get((name, proto, k))
            out.append(
                f"{float(r['acc_mean']):.1f} ± {float(r['acc_std_sample']):.1f} "
                f"[±{float(r['acc_ci95']):.1f}]" if r else "-"
            )
        print(f"| {proto} | {name} | " + " | ".join(out) + " |")
print()
print("mean ± sample std over seeds [Student-t 95 % CI half-width]; n = 5 seeds per cell")
PYEOF
echo
compare_summary | tee -a "$OUT/summary.md"
echo "wall times (s):"
cat "$OUT/times.tsv" 2>/dev/null || echo "(none recorded in $OUT/times.tsv)"
