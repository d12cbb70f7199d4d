#!/usr/bin/env bash
# The foundation-model study as one command (configs/boards/sar_fm_2025.yaml: AFRL's layout,
# Inkawhich 2025): every backbone x recipe x ATRNet-STAR setting x label budget, each setting
# with `--conditions all` (one training per cell, one record per test condition), all into ONE
# run folder, then the board and robustness CSVs of that folder.
#
# A backbone whose weights are absent is skipped with a line saying where to get them; a
# backbone name or a protocol this sarfewshot does not register (or whose optional package is
# absent: lora without peft) is skipped with a line too, so the board runs with whatever the
# installed toolkit offers.
#
# usage: scripts/field_board.sh [--cpu-scale] [EVAL ARGS...]   (passed on to every `eval`)
# Environment (defaults in brackets):
#   CONFIG [configs/boards/sar_fm_2025.yaml]   BACKBONES [every entry; spaces or commas]
#   WEIGHTS_DIR [$SARFEWSHOT_WEIGHTS, else weights]: holds each entry's `file`; a `hub`
#     entry's <name>.safetensors there wins over the Hugging Face cache, as in `eval`
#   WEIGHTS ['']: NAME=PATH overrides separated by ';' (a PATH may be hf://OWNER/REPO/FILE)
#   FETCH [0]: 1 lets `hub` entries absent from the Hugging Face cache download
#   DATA [data/ATRNet-STAR]: the ATRNet-STAR root   OUT [runs/field_board]   DEVICE [auto]
#   SETTINGS, PROTOCOLS, SHOTS, SEEDS, IMG, EPOCHS ['': the config's]
#   CPU_SCALE [0]: 1 (or --cpu-scale) runs the layout with one tiny random backbone standing in
#     for every registered backbone, tiny inputs and one epoch (the config's cpu_scale block),
#     into runs/field_board_cpu_scale by default: a pipeline check, never a result
# Reruns skip finished cells; a failed cell is recorded and retried on the next run.
set -euo pipefail

cd "$(dirname "$0")/.."
CPU_SCALE=${CPU_SCALE:-0}
if [ "${1:-}" = "--cpu-scale" ]; then
    CPU_SCALE=1
    shift
fi
CONFIG=${CONFIG:-configs/boards/sar_fm_2025.yaml}
BACKBONES=${BACKBONES:-}
WEIGHTS_DIR=${WEIGHTS_DIR:-${SARFEWSHOT_WEIGHTS:-weights}}
WEIGHTS=${WEIGHTS:-}
FETCH=${FETCH:-0}
DATA=${DATA:-data/ATRNet-STAR}
DEVICE=${DEVICE:-auto}
if [ "$CPU_SCALE" = 1 ]; then OUT=${OUT:-runs/field_board_cpu_scale}; else OUT=${OUT:-runs/field_board}; fi

if [ -z "${PY:-}" ]; then
    PY=python
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
fi
SFS=${SFS:-$PY -m sarfewshot}
export SARFEWSHOT_NO_PROGRESS=${SARFEWSHOT_NO_PROGRESS:-1}

# The plan: skip lines go to stderr; stdout holds KEY=VALUE lines (settings, protocols, shots,
# seeds, img, epochs, opts) and one "run NAME|WEIGHTS|ARCH" line per backbone to evaluate.
plan() {
    "$PY" - "$CONFIG" "$WEIGHTS_DIR" "$BACKBONES" "$WEIGHTS" "$FETCH" "$CPU_SCALE" <<'PYEOF'
import sys
from pathlib import Path

import yaml

config, folder, wanted, weights, fetch, cpu_scale = sys.argv[1:7]
try:
    board = yaml.safe_load(open(config))
    entries = {e["name"]: e for e in board["backbones"]}
    recipes, settings = board["recipes"], board["settings"]
except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
    sys.exit(f"error: {config}: not a board config with backbones, recipes, settings ({exc})")

from sarfewshot.engine.registry import get_trainer
from sarfewshot.errors import UnknownNameError
from sarfewshot.models.registry import get_backbone_spec


def registered(lookup, name):
    try:
        lookup(name)
    except UnknownNameError:
        return False
    return True


given = {}
for piece in filter(None, (p.strip() for p in weights.split(";"))):
    name, eq, value = piece.partition("=")
    if not eq or not name.strip():
        sys.exit(f"error: WEIGHTS: {piece!r} is not NAME=PATH")
    given[name.strip()] = value.strip()
names = [n for n in wanted.replace(",", " ").split() if n] or list(entries)
unknown = sorted((set(names) | set(given)) - set(entries))
if unknown:
    sys.exit(f"error: {unknown} not in {config} (BACKBONES / WEIGHTS); has {list(entries)}")


def missing_extra(protocol):
    """Why a registered protocol cannot run here (its optional package is absent), or None:
    `eval` would stop at its first cell, so the recipes after it would never run."""
    if protocol != "lora":
        return None
    from sarfewshot.errors import ConfigError
    from sarfewshot.models.adapt import require_peft

    try:
        require_peft()
    except ConfigError as exc:
        return str(exc)
    return None


protocols = []
for recipe in recipes:
    if not registered(get_trainer, recipe["protocol"]):
        print(f"skip recipe {recipe['name']}: protocol {recipe['protocol']!r} is not "
              "registered in this sarfewshot", file=sys.stderr)
    elif why := missing_extra(recipe["protocol"]):
        print(f"skip recipe {recipe['name']}: {why}", file=sys.stderr)
    else:
        protocols.append(recipe["protocol"])


def cached(uri):
    """The local Hugging Face cache's copy of hf://OWNER/REPO/FILE, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    owner, repo, filename = uri[len("hf://"):].split("/", 2)
    found = try_to_load_from_cache(f"{owner}/{repo}", filename)
    return found if isinstance(found, str) else None


def weights_of(name, entry):
    """The --weights value of a backbone, or None (with the skip line) when it is absent."""
    where = "; ".join(entry.get("sources") or ["no public source known"])
    if name in given:
        return given[name]
    if entry.get("file"):
        path = Path(folder) / entry["file"]
        if path.is_file():
            return str(path)
        print(f"skip {name}: no weights at {path}; get {entry['file']} from: {where} "
              f"(or set WEIGHTS='{name}=PATH')", file=sys.stderr)
        return None
    # the registry's <name>.safetensors in the weights folder wins over the hub, as in `eval`
    local = Path(folder) / get_backbone_spec(name).expected_file
    if local.is_file():
        return str(local)
    uri = entry["hub"]
    if fetch == "1" or cached(uri):
        return uri
    print(f"skip {name}: {uri} is not in the Hugging Face cache; get it from: {where} "
          f"(huggingface-cli download, or FETCH=1 to download it here)", file=sys.stderr)
    return None


chosen = []
for name in names:
    if not registered(get_backbone_spec, name):
        print(f"skip {name}: backbone {name!r} is not registered in this sarfewshot "
              "(`sarfewshot backbones` lists those it has)", file=sys.stderr)
        continue
    if cpu_scale == "1":
        chosen.append(name)
        continue
    path = weights_of(name, entries[name])
    if path is not None:
        chosen.append((name, path))

scale = board.get("cpu_scale") or {}
big = cpu_scale != "1"
print("settings=" + " ".join(settings))
print("protocols=" + ",".join(protocols))
print("shots=" + ",".join(str(k) for k in (board["shots"] if big else scale["shots"])))
print("seeds=" + ("" if big else ",".join(str(s) for s in scale.get("seeds", []))))
print("img=" + str(board["img_size"] if big else scale["img_size"]))
print("epochs=" + ("" if big else str(scale.get("epochs", ""))))
print("opts=" + ("" if big else " ".join(str(o) for o in scale.get("opts", []))))
print("conditions=" + str(board.get("conditions", "all")))
print("dataset=" + str(board.get("dataset", "atrnet_star")))
if big:
    for name, path in chosen:
        print(f"run {name}|{path}|")
elif chosen:
    print(f"stand-in {scale['backbone']}@{scale['arch']} for {', '.join(chosen)}",
          file=sys.stderr)
    print(f"run {scale['backbone']}||{scale['arch']}")
PYEOF
}

plan_text=$(plan) || exit 2
value() { sed -n "s/^$1=//p" <<<"$plan_text"; }
SETTINGS=${SETTINGS:-$(value settings)}
PROTOCOLS=${PROTOCOLS:-$(value protocols)}
SHOTS=${SHOTS:-$(value shots)}
SEEDS=${SEEDS:-$(value seeds)}
IMG=${IMG:-$(value img)}
EPOCHS=${EPOCHS:-$(value epochs)}
CONDITIONS=$(value conditions)
DATASET=$(value dataset)
read -r -a OPTS <<<"$(value opts)"
runs=$(sed -n 's/^run //p' <<<"$plan_text")
if [ -z "$runs" ]; then
    echo "error: no backbone of $CONFIG can run (see the skip lines)" >&2
    exit 2
fi
if [ -z "$PROTOCOLS" ]; then
    echo "error: no recipe of $CONFIG has a registered protocol (see the skip lines)" >&2
    exit 2
fi
if [ "$CPU_SCALE" = 1 ]; then
    echo "CPU scale: tiny random models on $DATA; these numbers are a pipeline check, not results"
fi
echo "field board: $(cut -d'|' -f1 <<<"$runs" | paste -sd, -) x $PROTOCOLS x $SETTINGS -> $OUT"

status=0
while IFS='|' read -r name weights arch; do
    for setting in ${SETTINGS//,/ }; do
        args=(--backbone "$name" --dataset "$DATASET" --root "$DATA" --shots "$SHOTS"
              --protocol "$PROTOCOLS" --img-size "$IMG" --device "$DEVICE" --output "$OUT"
              --conditions "$CONDITIONS")
        if [ -n "$weights" ]; then args+=(--weights "$weights"); fi
        if [ -n "$arch" ]; then args+=(--arch "$arch"); fi
        if [ -n "$SEEDS" ]; then args+=(--seeds "$SEEDS"); fi
        opts=(DATASET.SAR.ATRNET_SETTING "$setting" "${OPTS[@]}")
        if [ -n "$EPOCHS" ]; then opts+=(OPTIM.MAX_EPOCH "$EPOCHS"); fi
        echo "\$ $SFS eval ${args[*]} $* ${opts[*]}"
        $SFS eval "${args[@]}" "$@" "${opts[@]}" </dev/null || status=$?
    done
done <<<"$runs"
$SFS leaderboard "$OUT" --csv "$OUT/board.csv" --markdown "$OUT/board.md" \
    --robustness-csv "$OUT/robustness.csv" || status=$?
exit "$status"
