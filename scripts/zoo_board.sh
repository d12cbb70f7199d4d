#!/usr/bin/env bash
# The SAR backbone zoo board: every backbone of configs/zoo.yaml whose weights are present,
# through ONE evaluation grid (one `sarfewshot eval` output folder, so one set of split files
# and paired cells), then the leaderboard of that folder.
#   release protocols:      K = 10, 20, 40 x finetune, linear (the SAR-JEPA release's grid)
#   quick frozen features:  K = 1, 5, 10, 20 x knn, prototype, linear
# A backbone whose weights file is absent is skipped with a line naming its public sources.
#
# usage: scripts/zoo_board.sh [EVAL ARGS...]   (passed on to every `sarfewshot eval`)
# Environment (defaults in brackets):
#   CONFIG [configs/zoo.yaml]   BACKBONES [every entry; names separated by spaces or commas]
#   WEIGHTS_DIR [$SARFEWSHOT_WEIGHTS, else weights]: holds each entry's `file`
#   WEIGHTS ['']: NAME=PATH overrides separated by ';' (a PATH may be hf://OWNER/REPO/FILE)
#   ARCHS ['']: NAME=ARCH overrides separated by ';', e.g. "saratrx=heads=2;ijepa=heads=2"
#   DATA [../shared/data]  DATASETS [mstar]  OUT [runs/zoo_board]  IMG [224]  DEVICE [auto]
#   RELEASE_SHOTS [10,20,40]  RELEASE_PROTOCOLS [finetune,linear]
#   QUICK_SHOTS [1,5,10,20]   QUICK_PROTOCOLS [knn,prototype,linear]   (set to '' to skip)
#   SEEDS ['': each protocol's default]  EPOCHS ['': the presets' 40; sets OPTIM.MAX_EPOCH]
# CPU check on the zoo vectors (tiny random models, patch 16 at 64 px, 2 heads):
#   WEIGHTS="saratrx=../shared/vectors/zoo/saratrx_ckpt.pth;sarmae=../shared/vectors/zoo/sarmae_ckpt.pth;ijepa=../shared/vectors/zoo/ijepa_ckpt.pth" \
#   ARCHS="saratrx=heads=2;sarmae=heads=2;ijepa=heads=2" BACKBONES="saratrx sarmae ijepa" \
#   IMG=64 SEEDS=1 EPOCHS=1 RELEASE_SHOTS=10 QUICK_SHOTS=1,5 DEVICE=cpu scripts/zoo_board.sh
# Reruns skip finished cells; a failed cell is recorded and retried on the next run.
set -euo pipefail

cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/zoo.yaml}
BACKBONES=${BACKBONES:-}
WEIGHTS_DIR=${WEIGHTS_DIR:-${SARFEWSHOT_WEIGHTS:-weights}}
WEIGHTS=${WEIGHTS:-}
ARCHS=${ARCHS:-}
DATA=${DATA:-../shared/data}
DATASETS=${DATASETS:-mstar}
OUT=${OUT:-runs/zoo_board}
IMG=${IMG:-224}
DEVICE=${DEVICE:-auto}
RELEASE_SHOTS=${RELEASE_SHOTS:-10,20,40}
RELEASE_PROTOCOLS=${RELEASE_PROTOCOLS-finetune,linear}
QUICK_SHOTS=${QUICK_SHOTS:-1,5,10,20}
QUICK_PROTOCOLS=${QUICK_PROTOCOLS-knn,prototype,linear}
SEEDS=${SEEDS:-}
EPOCHS=${EPOCHS:-}

# the repository's own environment when there is one (PY / SFS override)
if [ -z "${PY:-}" ]; then
    PY=python
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
fi
SFS=${SFS:-$PY -m sarfewshot}
export SARFEWSHOT_NO_PROGRESS=${SARFEWSHOT_NO_PROGRESS:-1}

# The selection: skip lines go to stderr; stdout holds three lines, the backbone names
# (comma-separated), then the NAME=PATH and NAME=ARCH pairs (';'-separated) for `eval`.
select_backbones() {
    "$PY" - "$CONFIG" "$WEIGHTS_DIR" "$BACKBONES" "$WEIGHTS" "$ARCHS" <<'PYEOF'
import sys
from pathlib import Path

import yaml

config, folder, wanted, weights, archs = sys.argv[1:6]


def pairs(text, var):
    out = {}
    for piece in filter(None, (p.strip() for p in text.split(";"))):
        name, eq, value = piece.partition("=")
        if not eq or not name.strip():
            sys.exit(f"error: {var}: {piece!r} is not NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


try:
    entries = yaml.safe_load(open(config))["backbones"]
    table = {e["name"]: e for e in entries}
except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
    sys.exit(f"error: {config}: not a zoo config with a 'backbones' list ({exc})")
names = [n for n in wanted.replace(",", " ").split() if n] or list(table)
given_w, given_a = pairs(weights, "WEIGHTS"), pairs(archs, "ARCHS")
unknown = sorted((set(names) | set(given_w) | set(given_a)) - set(table))
if unknown:
    sys.exit(f"error: {unknown} not in {config} (BACKBONES / WEIGHTS / ARCHS); has {list(table)}")
chosen, w_out, a_out = [], [], []
for name in names:
    entry = table[name]
    path = given_w.get(name) or str(Path(folder) / entry["file"])
    if not path.startswith("hf://") and not Path(path).is_file():
        where = "; ".join(entry.get("sources") or ["no public source known"])
        print(
            f"skip {name}: no weights at {path}; get {entry['file']} from: {where} "
            f"(see {config} or `sarfewshot backbones`; or set WEIGHTS='{name}=PATH')",
            file=sys.stderr,
        )
        continue
    chosen.append(name)
    w_out.append(f"{name}={path}")
    arch = given_a.get(name, entry.get("arch") or "")
    if arch:
        a_out.append(f"{name}={arch}")
print(",".join(chosen))
print(";".join(w_out))
print(";".join(a_out))
PYEOF
}

selection=$(select_backbones) || exit 2
names=$(sed -n 1p <<<"$selection")
weights=$(sed -n 2p <<<"$selection")
archs=$(sed -n 3p <<<"$selection")
if [ -z "$names" ]; then
    echo "error: no backbone of $CONFIG has its weights in $WEIGHTS_DIR (see the skip lines)" >&2
    exit 2
fi
echo "zoo board: $names -> $OUT"

board() {  # board SHOTS PROTOCOLS [EVAL ARGS...]: one slice of the grid, same output folder
    local shots=$1 protocols=$2
    shift 2
    if [ -z "$protocols" ]; then return 0; fi
    local args=(--backbone "$names" --weights "$weights" --dataset "$DATASETS" --root "$DATA"
                --shots "$shots" --protocol "$protocols" --img-size "$IMG" --device "$DEVICE"
                --output "$OUT")
    if [ -n "$archs" ]; then args+=(--arch "$archs"); fi
    if [ -n "$SEEDS" ]; then args+=(--seeds "$SEEDS"); fi
    local opts=()
    if [ -n "$EPOCHS" ]; then opts+=(OPTIM.MAX_EPOCH "$EPOCHS"); fi
    echo "\$ $SFS eval ${args[*]} $* ${opts[*]}"
    $SFS eval "${args[@]}" "$@" "${opts[@]}"
}

status=0
board "$RELEASE_SHOTS" "$RELEASE_PROTOCOLS" "$@" || status=$?
board "$QUICK_SHOTS" "$QUICK_PROTOCOLS" "$@" || status=$?
$SFS leaderboard "$OUT" --csv "$OUT/board.csv" --markdown "$OUT/board.md" || status=$?
exit "$status"
