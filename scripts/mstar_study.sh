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
DOCS=${DOCS:-docs/mstar_study}          # leaderboard.csv, leaderboard.md, compare_*.csv, PNGs
METHODS=${METHODS:-"sarjepa lomar mae hog sar_hog"}
EPOCHS=${EPOCHS:-16}                    # pretraining epochs over the 2746 TRAIN chips
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
PROTOCOLS=${PROTOCOLS:-linear,knn,prototype}
SHOTS=${SHOTS:-1,5,10,20}
SEEDS=${SEEDS:-1-5}
DEVICE=${DEVICE:-cpu}

cd "$(dirname "$0")/.."
SFS=${SFS:-sarfewshot}
if [ -x .venv/bin/sarfewshot ] && ! command -v sarfewshot >/dev/null; then SFS=.venv/bin/sarfewshot; fi
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

evaluate() {  # evaluate NAME [WEIGHTS ARCH]: every protocol x K x seed cell of one backbone
    local name=$1 weights=${2:-} arch=${3:-} extra=()
    if [ -n "$weights" ]; then extra+=(--weights "$weights"); fi
    if [ -n "$arch" ]; then extra+=(--arch "$arch"); fi
    timed "eval $name${weights:+ $weights}" $SFS eval --backbone "$name" "${extra[@]}" \
        --dataset mstar --root "$DATA" --shots "$SHOTS" --protocol "$PROTOCOLS" \
        --seeds "$SEEDS" --img-size "$IMG" --device "$DEVICE" --output "$OUT/eval"
}

for m in $METHODS; do pretrain "$m"; done

evaluate random "" "$IRPE_ARCH"
for m in $METHODS; do
    ckpt="$OUT/pretrain/$m/checkpoint-last.pth"
    case $m in
        mae) evaluate mae "$ckpt" "$VIT_ARCH" ;;  # plain ViT: heads not stored, give the spec
        hog) evaluate fgmae "$ckpt" ;;            # no backbone is named "hog": HOG-target label
        *) evaluate "$m" "$ckpt" ;;
    esac
done

$SFS leaderboard "$OUT/eval" --csv "$DOCS/leaderboard.csv" --markdown "$DOCS/leaderboard.md" \
    --plots --plots-dir "$OUT/plots" --format github
cp "$OUT"/plots/*shots*.png "$DOCS"/ 2>/dev/null || echo "no accuracy-vs-shots PNG was written"
for b in random lomar mae fgmae sar_hog; do
    a=sarjepa
    if [ "$b" = random ]; then b="random@$IRPE_ARCH"; fi
    case " $METHODS " in *" ${b%%@*} "* | *" hog "*) ;; esac
    $SFS compare "$OUT/eval" --a "$a" --b "$b" --csv "$OUT/compare_${a}_vs_${b%%@*}.csv" || true
done
echo "wall times (s):"
cat "$OUT/times.tsv"
