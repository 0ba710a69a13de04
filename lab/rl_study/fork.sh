#!/usr/bin/env bash
# A study run that reuses R0's data, trajectories, SFT and SFT evaluations: copy R0 with its stage markers and
# model timestamps (cp -a), then rerun the demo with RL overrides; only GRPO and the SFT+RL evaluations redo.
#   lab/rl_study/fork.sh runs/rl_study/R0 runs/rl_study/R1 --temperature 0.5
set -euo pipefail
src=$1; dst=$2; shift 2
[ -e "$dst" ] || cp -a "$src" "$dst"
exec nice -n 10 .venv/bin/mirg demo --config configs/demo/rl_study.yaml --out "$dst" "$@"
