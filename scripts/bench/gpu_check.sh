#!/usr/bin/env bash
# The GPU check in one command, with a hard stop.
#
# usage: scripts/bench/gpu_check.sh [--budget-s 480] [any other gpu_check.py option]
#   e.g. scripts/bench/gpu_check.sh --device cuda --out gpu_check
# Runs scripts/bench/gpu_check.py (which checks its budget before every stage and skips what would
# not fit) under `timeout`: budget + 60 s, then SIGTERM, then SIGKILL 10 s later. The JSON and the
# Markdown summary are rewritten after every stage, so a run that is cut off keeps what it measured.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
PY=${PYTHON:-python}
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
budget=480
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --budget-s) budget=${args[$((i + 1))]:-480} ;;
        --budget-s=*) budget=${args[$i]#--budget-s=} ;;
    esac
done
hard=$(awk -v b="$budget" 'BEGIN { printf "%d", b + 60 }')
export SARFEWSHOT_NO_PROGRESS=1
echo "gpu_check: budget ${budget} s, hard stop after ${hard} s"
exec timeout --kill-after=10 "$hard" "$PY" scripts/bench/gpu_check.py "$@"
