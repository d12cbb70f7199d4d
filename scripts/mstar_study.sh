#!/usr/bin/env bash
# Small-scale MSTAR SOC study, second edition (docs/mstar_study.md): pretrain tiny ViTs with
# several self-supervised methods on the TRAIN chips (no labels), each at its own learning rate
# chosen on the validation pool, with two pretraining seeds and one equal-CPU-time MAE run;
# evaluate them and a random-init ViT K-shot on TRAIN / all TEST chips; then write the tables,
# the Holm-adjusted paired comparisons and the plots.
#
# usage: scripts/mstar_study.sh            (variables below; override any by environment, e.g.
#        EPOCHS=2 SWEEP_EPOCHS=1 OUT=/tmp/smoke DOCS=/tmp/smoke/docs scripts/mstar_study.sh)
# Stages, in order (STAGES picks any subset):
#   sweep     pretrain every method x learning rate (and the normalised-pixel variant of the
#             pixel-target methods) for SWEEP_EPOCHS
#   select    kNN of every sweep run on the validation pool (the 20 % of TRAIN that is never a
#             support set; no TEST accuracy is computed); pick each method's learning rate (and
#             pixel normalisation) by that accuracy
#   pretrain  every method at its selection, seeds PRETRAIN_SEEDS, EPOCHS epochs; then one MAE
#             run given the time of SAR-JEPA's first seed (process CPU time, which other work
#             on the machine does not inflate)
#   eval      every backbone: linear, kNN, prototype, fine-tune; K = SHOTS; seeds SEEDS; TEST
#   check     after the fact, never used to choose: the selection's kNN cells on TEST for each
#             chosen sweep run, and on the validation pool for the full runs
#   blocks    (the next edition; not in the default STAGES) every stage above again under
#             OUT/blocks, with a validation pool that pretraining never sees: the pool drawn as
#             seed-free blocks (DATASET.VAL_POOL_RULE blocks) and left out of every pretraining
#             run (pretrain --exclude-split mstar_soc:val --exclude-root DATA, the pool drawn
#             under the same keys through DATA.EXCLUDE_EVAL_OPTS). DRY_RUN=1 prints
#             its plan and CPU budget and runs nothing:  DRY_RUN=1 STAGES=blocks scripts/mstar_study.sh
#   report    DOCS/*.csv and *.md, the plots, the paired comparisons (Holm), the comparisons
#             with the pretraining run as the unit, and copies of times.tsv and the machine's
#             description (machine.txt) into DOCS
# Re-runnable: a finished pretraining run has a `done` file and is skipped, an unfinished one
# resumes from its last checkpoint, and evaluation skips finished cells.
# Wall and CPU times are appended to OUT/times.tsv.
set -euo pipefail

DATA=${DATA:-../shared/data}            # holds MSTAR_SOC/TRAIN and MSTAR_SOC/TEST; never copied
OUT=${OUT:-runs/mstar_study}            # checkpoints, records, splits, caches (not committed)
DOCS=${DOCS:-docs/mstar_study}          # committed: the CSVs and tables of the report
DOC=${DOC:-$DOCS.md}                    # the doc whose <!-- study:NAME --> tables are refreshed
METHODS=${METHODS:-"sarjepa lomar mae hog sar_hog"}
NORM_PIX_METHODS=${NORM_PIX_METHODS:-"lomar mae"}  # pixel targets: also try TARGET.NORM_PIX
SWEEP_LRS=${SWEEP_LRS:-"3e-4 1e-3 3e-3"}
SWEEP_EPOCHS=${SWEEP_EPOCHS:-10}
SWEEP_SHOTS=${SWEEP_SHOTS:-10,20}       # kNN on the validation pool: K and seeds
SWEEP_SEEDS=${SWEEP_SEEDS:-1-3}
EPOCHS=${EPOCHS:-30}                    # full pretraining over the 2746 TRAIN chips
PRETRAIN_SEEDS=${PRETRAIN_SEEDS:-"0 1"}
BATCH=${BATCH:-32}
IMG=${IMG:-64}                          # pretraining and evaluation input size
PATCH=${PATCH:-8}
EMBED=${EMBED:-128}
DEPTH=${DEPTH:-4}
HEADS=${HEADS:-4}
PRED_DIM=${PRED_DIM:-64}                # predictor / MAE decoder
PRED_DEPTH=${PRED_DEPTH:-2}
PRED_HEADS=${PRED_HEADS:-2}
PROTOCOLS=${PROTOCOLS:-linear,knn,prototype,finetune}
SHOTS=${SHOTS:-1,5,10,20}
SEEDS=${SEEDS:-1-5}
DEVICE=${DEVICE:-cpu}
JOBS=${JOBS:-1}                         # runs (pretraining or evaluation) at once, e.g. JOBS=2
THREADS=${THREADS:-}                    # threads per run when JOBS > 1 (default: cores / JOBS)
STAGES=${STAGES:-"sweep select pretrain eval check report"}
PRETRAIN_ARGS=${PRETRAIN_ARGS:-}        # extra pretrain flags (the blocks stage sets the exclusion)
PRETRAIN_OPTS=${PRETRAIN_OPTS:-}        # extra trailing KEY VALUE pairs of every pretraining run
EVAL_OPTS=${EVAL_OPTS:-}                # extra trailing KEY VALUE pairs of every evaluation
VAL_POOL=${VAL_POOL:-0.2}               # the blocks stage's validation share (MSTAR's default)
BLOCKS_DOCS=${BLOCKS_DOCS:-docs/mstar_study_blocks}  # where the blocks stage's report goes
DRY_RUN=${DRY_RUN:-0}                   # 1: the blocks stage prints its plan and budget only

if [ -z "$THREADS" ]; then
    THREADS=$(($(nproc) / JOBS))
    if [ "$THREADS" -lt 1 ]; then THREADS=1; fi
fi

cd "$(dirname "$0")/.."
if [ -z "${SFS:-}" ] && [ -x .venv/bin/sarfewshot ] && ! command -v sarfewshot >/dev/null; then
    SFS=.venv/bin/sarfewshot  # a checkout's own environment, when none is active
    PY=${PY:-.venv/bin/python}
fi
SFS=${SFS:-sarfewshot}
PY=${PY:-python}
if [ "$DRY_RUN" != 1 ]; then mkdir -p "$OUT" "$DOCS"; fi
IRPE_ARCH="irpe:patch=$PATCH,dim=$EMBED,depth=$DEPTH,heads=$HEADS"
VIT_ARCH="vit:patch=$PATCH,dim=$EMBED,depth=$DEPTH,heads=$HEADS"
REPORT=(scripts/mstar_study_report.py)

timed() {  # timed LABEL CMD...: run CMD; append "LABEL<TAB>wall s<TAB>CPU s" to OUT/times.tsv
    local label=$1 clock real user sys
    shift
    echo "\$ $*"
    clock=$(mktemp)
    # CPU time (user + sys) does not grow when other work shares the cores; wall time does
    { TIMEFORMAT="%R %U %S"; time "$@" 2>&3; } 3>&2 2>"$clock"
    read -r real user sys <"$clock"
    rm -f "$clock"
    awk -v l="$label" -v r="$real" -v u="$user" -v s="$sys" \
        'BEGIN { printf "%s\t%.0f\t%.0f\n", l, r, u + s }' >>"$OUT/times.tsv"
}

pretrain() {  # pretrain DIR METHOD EPOCHS SEED LR NORM_PIX: one run of the shared architecture
    local dir=$1 m=$2 epochs=$3 seed=$4 lr=$5 norm_pix=$6
    if [ -f "$dir/done" ]; then echo "pretrain $dir: done"; return; fi
    timed "pretrain ${dir#"$OUT"/}" $SFS pretrain --config "configs/pretrain/${m}_tiny.yaml" \
        --data "$DATA/MSTAR_SOC/TRAIN" --output "$dir" --epochs "$epochs" --batch-size "$BATCH" \
        --img-size "$IMG" --seed "$seed" --device "$DEVICE" --resume $PRETRAIN_ARGS \
        MODEL.PATCH_SIZE "$PATCH" MODEL.EMBED_DIM "$EMBED" MODEL.DEPTH "$DEPTH" \
        MODEL.NUM_HEADS "$HEADS" MODEL.PRED_DIM "$PRED_DIM" MODEL.PRED_DEPTH "$PRED_DEPTH" \
        MODEL.PRED_HEADS "$PRED_HEADS" OPTIM.LR "$lr" TARGET.NORM_PIX "$norm_pix" \
        TRAIN.LOG_EVERY 50 $PRETRAIN_OPTS
    touch "$dir/done"
}

arch_of() {  # arch_of METHOD: the arch spec eval needs (MAE is a plain ViT without head count)
    if [ "$1" = mae ]; then echo "$VIT_ARCH"; else echo ""; fi
}

evaluate() {  # evaluate NAME WEIGHTS ARCH OUTPUT EVAL-ARGS...: one backbone's grid
    local name=$1 weights=$2 arch=$3 out=$4 extra=()
    shift 4
    if [ -n "$weights" ]; then extra+=(--weights "$weights"); fi
    if [ -n "$arch" ]; then extra+=(--arch "$arch"); fi
    timed "eval ${weights:-$name}" $SFS eval --backbone "$name" "${extra[@]}" \
        --dataset mstar --root "$DATA" --img-size "$IMG" --device "$DEVICE" --output "$out" "$@" \
        $EVAL_OPTS
}

variants() {  # variants METHOD: "NAME NORM_PIX" lines, the normalised-pixel one where it applies
    echo "$1 False"
    case " $NORM_PIX_METHODS " in *" $1 "*) echo "${1}_normpix True" ;; esac
}

in_pool() {  # in_pool CMD...: run CMD in the background, at most JOBS at once (1: in line)
    if [ "$JOBS" -le 1 ]; then "$@"; return; fi
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    # each run gets its share of the cores: JOBS runs of all cores each would oversubscribe them
    (export OMP_NUM_THREADS=$THREADS; "$@") &
}

drain() {  # wait for every pooled run; a failed one stops the script (set -e)
    while [ -n "$(jobs -rp)" ]; do wait -n; done
}

has_stage() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if has_stage sweep; then
    for m in $METHODS; do
        while read -r name norm_pix; do
            for lr in $SWEEP_LRS; do
                in_pool pretrain "$OUT/sweep/$name/lr$lr" "$m" "$SWEEP_EPOCHS" 0 "$lr" "$norm_pix"
            done
        done < <(variants "$m")
    done
    drain
fi

if has_stage select; then
    for m in $METHODS; do  # every sweep run must have finished: a choice among fewer is no sweep
        while read -r name _; do
            for lr in $SWEEP_LRS; do
                if [ ! -f "$OUT/sweep/$name/lr$lr/done" ]; then
                    echo "select: sweep run $OUT/sweep/$name/lr$lr has not finished" >&2
                    exit 2
                fi
            done
        done < <(variants "$m")
    done
    for m in $METHODS; do
        for ckpt in "$OUT"/sweep/"$m"{,_normpix}/lr*/checkpoint-last.pth; do
            [ -f "$(dirname "$ckpt")/done" ] || continue  # missing or unfinished
            in_pool evaluate "$m" "$ckpt" "$(arch_of "$m")" "$OUT/sweep_eval" \
                --shots "$SWEEP_SHOTS" --protocol knn --seeds "$SWEEP_SEEDS" --eval-split val
        done
    done
    drain
    $PY "${REPORT[@]}" select --runs "$OUT" --methods $METHODS --out "$OUT/selection.tsv" \
        --markdown "$DOCS/lr_selection.md" --csv "$DOCS/lr_selection.csv" --doc "$DOC"
fi

selected() {  # selected METHOD: "LR NORM_PIX" from OUT/selection.tsv
    awk -v m="$1" '$1 == m { print $2, $3 }' "$OUT/selection.tsv"
}

if has_stage pretrain; then
    for m in $METHODS; do
        read -r lr norm_pix < <(selected "$m")
        for seed in $PRETRAIN_SEEDS; do
            in_pool pretrain "$OUT/pretrain/$m/seed$seed" "$m" "$EPOCHS" "$seed" "$lr" "$norm_pix"
        done
    done
    # equal compute: MAE for as many epochs as fit in SAR-JEPA's first-seed time (CPU seconds,
    # scaled by MAE's own first seed); it joins the pool once both have finished
    first=${PRETRAIN_SEEDS%% *}
    for m in sarjepa mae; do
        while [ ! -f "$OUT/pretrain/$m/seed$first/done" ] && [ -n "$(jobs -rp)" ]; do wait -n; done
    done
    mae_epochs=$($PY "${REPORT[@]}" equal-time --runs "$OUT" --seed "$first" --epochs "$EPOCHS")
    read -r lr norm_pix < <(selected mae)
    in_pool pretrain "$OUT/pretrain/mae_equal_time/seed$first" mae "$mae_epochs" "$first" "$lr" \
        "$norm_pix"
    drain
fi

if has_stage eval; then
    grid=(--shots "$SHOTS" --protocol "$PROTOCOLS" --seeds "$SEEDS")
    in_pool evaluate random "" "$IRPE_ARCH" "$OUT/eval" "${grid[@]}"
    # METHODS' order (the reference first), so a partial grid can already be compared
    for arm in $METHODS mae_equal_time; do
        for ckpt in "$OUT/pretrain/$arm"/seed*/checkpoint-last.pth; do
            [ -f "$(dirname "$ckpt")/done" ] || continue  # an unfinished run has no final weights
            m=${arm%_equal_time}
            in_pool evaluate "$m" "$ckpt" "$(arch_of "$m")" "$OUT/eval" "${grid[@]}"
        done
    done
    drain
fi

chosen_sweep() {  # chosen_sweep METHOD: the sweep folder of METHOD's chosen LR and variant
    local lr norm_pix name=$1 x
    read -r lr norm_pix < <(selected "$1")
    if [ "$norm_pix" = True ]; then name=${1}_normpix; fi
    for x in $SWEEP_LRS; do  # selection.tsv writes 0.0003 where the folder says 3e-4
        if awk -v a="$x" -v b="$lr" 'BEGIN { exit !(a + 0 == b + 0) }'; then
            echo "$OUT/sweep/$name/lr$x"
        fi
    done
}

if has_stage check; then
    # after the fact, never used to choose: the selection's kNN cells scored on TEST for each
    # chosen sweep run, and on the validation pool for the full runs
    for m in $METHODS; do
        in_pool evaluate "$m" "$(chosen_sweep "$m")/checkpoint-last.pth" "$(arch_of "$m")" \
            "$OUT/check_test" --shots "$SWEEP_SHOTS" --protocol knn --seeds "$SWEEP_SEEDS"
        for ckpt in "$OUT/pretrain/$m"/seed*/checkpoint-last.pth; do
            [ -f "$(dirname "$ckpt")/done" ] || continue
            in_pool evaluate "$m" "$ckpt" "$(arch_of "$m")" "$OUT/check_val" \
                --shots "$SWEEP_SHOTS" --protocol knn --seeds "$SWEEP_SEEDS" --eval-split val
        done
    done
    drain
fi

if has_stage blocks; then
    # The next edition: the whole study again in its own folders, with the validation pool drawn
    # as seed-free blocks and excluded from every pretraining run, so that selecting on the pool
    # no longer scores images pretraining has seen. Its split files are drawn under the blocks
    # rule (the evaluations' DATASET.VAL_POOL_RULE), so its cells never mix with this edition's.
    # pretraining has no DATASET keys: the eval keys the excluded pool is drawn under go in
    # DATA.EXCLUDE_EVAL_OPTS, one tuple without spaces (PRETRAIN_OPTS is split on spaces)
    pool_keys="DATASET.VAL_POOL $VAL_POOL DATASET.VAL_POOL_RULE blocks"
    blocks_env=(
        OUT="$OUT/blocks" DOCS="$BLOCKS_DOCS" DOC="$BLOCKS_DOCS.md"
        STAGES="sweep select pretrain eval check report"
        PRETRAIN_ARGS="--exclude-split mstar_soc:val --exclude-root $DATA"
        PRETRAIN_OPTS="DATA.EXCLUDE_EVAL_OPTS ('DATASET.VAL_POOL',$VAL_POOL,'DATASET.VAL_POOL_RULE','blocks')"
        EVAL_OPTS="$pool_keys"
    )
    if [ "$DRY_RUN" = 1 ]; then
        echo "blocks stage (dry run: nothing is run)"
        echo "  the study's stages again, with:"
        printf '    %s\n' "${blocks_env[@]}"
        echo "  first sweep run:"
        echo "    $SFS pretrain --config configs/pretrain/sarjepa_tiny.yaml --data $DATA/MSTAR_SOC/TRAIN" \
            "--output $OUT/blocks/sweep/sarjepa/lr${SWEEP_LRS%% *} --epochs $SWEEP_EPOCHS ..." \
            "--exclude-split mstar_soc:val --exclude-root $DATA ..." \
            "DATA.EXCLUDE_EVAL_OPTS ('DATASET.VAL_POOL',$VAL_POOL,'DATASET.VAL_POOL_RULE','blocks')"
        echo "  selection: $SFS eval ... --protocol knn --eval-split val ... $pool_keys"
        echo "  CPU budget (OUT/blocks, JOBS=$JOBS):"
        # shellcheck disable=SC2086
        $PY "${REPORT[@]}" plan --methods $METHODS --norm-pix-methods $NORM_PIX_METHODS \
            --lrs $SWEEP_LRS --sweep-epochs "$SWEEP_EPOCHS" --epochs "$EPOCHS" \
            --seeds $PRETRAIN_SEEDS --excluded "$VAL_POOL" --jobs "$JOBS" | sed 's/^/    /'
    else
        env "${blocks_env[@]}" "$0"
    fi
fi

if has_stage report; then
    # one row per backbone and weights file (each pretraining run apart), for the record
    $SFS leaderboard "$OUT/eval" --csv "$DOCS/leaderboard_runs.csv" >/dev/null
    $PY "${REPORT[@]}" report --runs "$OUT" --docs "$DOCS" --doc "$DOC" --reference sarjepa \
        --methods $METHODS | tee "$OUT/summary.md"
    echo "times (label, wall s, CPU s):"
    cat "$OUT/times.tsv" 2>/dev/null || echo "(none recorded in $OUT/times.tsv)"
    # committed with the tables, so the doc's CPU-hours and machine are backed by files
    if [ -f "$OUT/times.tsv" ]; then cp "$OUT/times.tsv" "$DOCS/times.tsv"; fi
    {
        echo "cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
        echo "cores: $(nproc)"
        $PY -c 'import platform, torch, sarfewshot
print("python:", platform.python_version()); print("torch:", torch.__version__)
print("sarfewshot:", sarfewshot.__version__)'
    } >"$DOCS/machine.txt"
fi
