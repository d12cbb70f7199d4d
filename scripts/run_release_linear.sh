#!/usr/bin/env bash
# The SAR-JEPA release's linear-probe batch: MSTAR SOC, FUSAR-Ship and SAR-ACD x K = 10, 20, 40
# x 6 seeds (1-6; the release ran 0-5), frozen backbone, BN + linear head on cached features
# (configs/trainers/linear/vit_b16.yaml).
# usage: scripts/run_release_linear.sh BACKBONE WEIGHTS DATA_ROOT [OUTPUT] [EVAL ARGS...]
# (arguments and environment as in scripts/run_release_protocol.sh)
exec "$(dirname "$0")/run_release_protocol.sh" linear "$@"
