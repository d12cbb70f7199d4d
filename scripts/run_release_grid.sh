#!/usr/bin/env bash
# The SAR-JEPA release's whole few-shot evaluation for one backbone: fine-tune (5 seeds) and
# linear probe (6 seeds) on MSTAR SOC, FUSAR-Ship and SAR-ACD x K = 10, 20, 40, then the
# leaderboard of the run folder (OUTPUT/leaderboard.csv, Markdown and PNG curves).
#
# usage: scripts/run_release_grid.sh BACKBONE WEIGHTS DATA_ROOT [OUTPUT] [EVAL ARGS...]
#   (arguments and environment as in scripts/run_release_protocol.sh)
# Both protocols share the split files in OUTPUT/splits, so their cells are paired. Reruns skip
# finished cells; a failed cell is recorded and retried on the next run.
set -euo pipefail

if [ "$#" -lt 3 ]; then
    sed -n '2,9p' "$0" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
out=runs/release
if [ "$#" -gt 3 ] && [ "${4#-}" = "$4" ]; then out=$4; fi
status=0
"$here/run_release_linear.sh" "$@" || status=$?
"$here/run_release_finetune.sh" "$@" || status=$?
sarfewshot leaderboard "$out" --csv "$out/leaderboard.csv" --markdown "$out/leaderboard.md" \
    --plots || status=$?
exit "$status"
