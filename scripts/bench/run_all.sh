#!/usr/bin/env bash
# Every performance figure of docs/performance.md, each a ratio measured in one run of one script.
#
# usage: scripts/bench/run_all.sh [--device cuda] [DATA]
#   DATA     folder holding MSTAR_SOC/ (default ../shared/data, relative to the repository root);
#            used only by the cached-vs-recomputed linear probe check on real chips
#   --device cuda   also run the GPU rows (feature extraction, ViT-B pretraining, target
#                   computation and the ViT-B/16 release grid) after the CPU rows
# CPU rows run on one thread (OMP_NUM_THREADS=1, and --threads 1 where the script has it), so a
# shared, busy machine disturbs the two sides of a ratio alike. Run from anywhere; scratch files
# go to $WORK (default: a new temporary folder, printed at the end).
set -euo pipefail

DEVICE=cpu
if [ "${1:-}" = "--device" ]; then DEVICE=$2; shift 2; fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
DATA=${1:-../shared/data}
PY=${PYTHON:-python}
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
SFS="$PY -m sarfewshot"
WORK=${WORK:-$(mktemp -d -t sfs_bench.XXXXXX)}
export SARFEWSHOT_NO_PROGRESS=1

step() {
    echo
    echo "\$ $*"
    local t0=$SECONDS
    "$@"
    echo "(wall $((SECONDS - t0)) s)"
}

cpu_rows() {
    echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), torch $($PY -c 'import torch; print(torch.__version__)')"
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    # 1. ratio-gradient target: summed-area box sums vs direct convolution
    step $PY scripts/bench/bench_targets.py --threads 1 --batch 32 --size 224 --repeats 3
    step $PY scripts/bench/bench_targets.py --threads 1 --batch 32 --size 64 --repeats 5
    # 2. feature extraction, SDPA vs plain attention: ViT-B/16 and ViT-Ti/16 at 224, tiny at 64
    step $PY scripts/bench/bench_attention.py --models base,tiny --img-size 224 --batch-size 4 --batches 2
    step $PY scripts/bench/bench_attention.py --models tiny --img-size 64 --batch-size 32 --batches 4
    # 3. pretraining throughput of tiny presets (64 px, batch 8), sarjepa and the pixel baselines
    for m in sarjepa lomar mae; do
        step $PY scripts/bench/bench_pretrain.py --method "$m" --arch tiny --steps 10 --warmup 3
    done
    # 4. linear probe on real chips: cached features vs the frozen backbone recomputed every epoch
    if [ -d "$DATA/MSTAR_SOC" ]; then
        for mode in cached rerun; do
            flag=""
            if [ "$mode" = rerun ]; then flag=--no-feature-cache; fi
            step $SFS eval --backbone random --arch irpe_vit_micro_patch8 --img-size 64 \
                --dataset mstar --root "$DATA" --shots 10,20 --protocol linear --seeds 1-2 \
                --device cpu --output "$WORK/linear_$mode" $flag
        done
        $PY - "$WORK" <<'PYEOF'
import sys
from pathlib import Path
from sarfewshot.results.records import iter_records
work = Path(sys.argv[1])
rows = {}
for mode in ("cached", "rerun"):
    for r in iter_records([work / f"linear_{mode}"]):
        rows.setdefault((r["shots"], r["seed"]), {})[mode] = (r["metrics"]["accuracy"], r["timings"]["total_s"])
print("linear probe, MSTAR SOC, random-init micro iRPE ViT, 64 px, 1 thread")
print(f"{'K':>3} {'seed':>4} {'acc cached':>10} {'acc re-run':>10} {'s cached':>9} {'s re-run':>9} {'ratio':>6}")
for (k, s), d in sorted(rows.items()):
    (ac, tc), (ar, tr) = d["cached"], d["rerun"]
    print(f"{k:>3} {s:>4} {ac:>10.2f} {ar:>10.2f} {tc:>9.2f} {tr:>9.2f} {tr / tc:>6.2f}")
PYEOF
    else
        echo "skipping the real-chip linear check: $DATA/MSTAR_SOC not found"
    fi
    # 5. release grid at CPU scale (micro ViT, 64 px, 10 epochs, synthetic MSTAR-shaped data),
    #    batched and --serial, one dataset: the rows of docs/performance.md's batched-executor table
    step $PY scripts/bench/bench_release_grid.py --device cpu --arch irpe_vit_micro_patch8 \
        --img-size 64 --train-per-class 100 --test-per-class 100 --epochs 10 --datasets 1 \
        --work "$WORK/grid" --json "$WORK/release_grid_cpu.json"
}

gpu_rows() {
    unset OMP_NUM_THREADS MKL_NUM_THREADS
    step $PY scripts/bench/bench_targets.py --device cuda --batch 32 --size 224 --repeats 10
    step $PY scripts/bench/bench_attention.py --device cuda --models base,tiny --batch-size 64
    step $PY scripts/bench/bench_attention.py --device cuda --models base,tiny --batch-size 256
    for m in sarjepa lomar mae ijepa; do
        step $PY scripts/bench/bench_pretrain.py --method "$m" --arch base --device cuda --batch 75
    done
    step $PY scripts/bench/bench_release_grid.py --device cuda --json "$WORK/release_grid_gpu.json"
}

cpu_rows
if [ "$DEVICE" != cpu ]; then gpu_rows; fi
echo
echo "scratch files: $WORK"
