#!/usr/bin/env bash
# The SAR-JEPA release's fine-tune batch: MSTAR SOC, FUSAR-Ship and SAR-ACD x K = 10, 20, 40
# x 5 seeds (1-5), all weights trainable (configs/trainers/finetune/vit_b16.yaml).
# usage: scripts/run_release_finetune.sh BACKBONE WEIGHTS DATA_ROOT [OUTPUT] [EVAL ARGS...]
# (arguments and environment as in scripts/run_release_protocol.sh)
exec "$(dirname "$0")/run_release_protocol.sh" finetune "$@"
