#!/usr/bin/env bash
# One protocol of the SAR-JEPA release's few-shot batch: MSTAR SOC, FUSAR-Ship and SAR-ACD
# x K = 10, 20, 40 x the protocol's default seeds (finetune 1-5, linear 1-6: the release's seed
# counts; the release itself ran 0-4 and 0-5, its seed 0 unseeded).
#
# usage: scripts/run_release_protocol.sh PROTOCOL BACKBONE WEIGHTS DATA_ROOT [OUTPUT] [EVAL ARGS...]
#   PROTOCOL   finetune or linear (or any registered protocol)
#   BACKBONE   a sarfewshot backbone name (sarjepa, mae, lomar, ..., random)
#   WEIGHTS    its checkpoint file ("" for $SARFEWSHOT_WEIGHTS/<name>.pth, or none for random)
#   DATA_ROOT  the folder holding MSTAR_SOC/, New_FUSAR/ and SAR_ACD/
#   OUTPUT     run folder (default runs/release); finished cells are skipped on a rerun
#   EVAL ARGS  passed on to `sarfewshot eval` (e.g. --device cuda:1, --shard 2/4, KEY VALUE)
# Environment: DATASETS (default mstar,fusar,sar_acd), SHOTS (default 10,20,40), SEEDS (default:
# the protocol's). Under a SLURM job array each task runs its share of the cells, e.g.
#   sbatch --array=0-7 --gpus=1 --wrap "scripts/run_release_finetune.sh sarjepa w.pth DATA"
set -euo pipefail

if [ "$#" -lt 4 ]; then
    sed -n '2,15p' "$0" >&2
    exit 2
fi
protocol=$1 backbone=$2 weights=$3 root=$4
shift 4
out=runs/release
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then  # an OUTPUT before the eval arguments
    out=$1
    shift
fi

args=(--backbone "$backbone" --dataset "${DATASETS:-mstar,fusar,sar_acd}" --root "$root"
      --shots "${SHOTS:-10,20,40}" --protocol "$protocol" --output "$out")
if [ -n "$weights" ]; then args+=(--weights "$weights"); fi
if [ -n "${SEEDS:-}" ]; then args+=(--seeds "$SEEDS"); fi
exec sarfewshot eval "${args[@]}" "$@"
