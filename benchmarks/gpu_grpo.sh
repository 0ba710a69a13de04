#!/usr/bin/env bash
# GRPO prompt sharing on one GPU (issue 30): a random-weight Qwen2.5-VL-3B built from its config in bf16, 4 images of
# 768 px per prompt, G = 8, 2 prompts (16 completions of 128 tokens) per step, gradient checkpointing; 1 warm-up + 3
# timed steps through TRL's path, then through mirg's shared path (each in its own process, same seeds).
# Writes benchmarks/bench_grpo_gpu_3b.json: baseline_step_s, shared_step_s, ratio, the generation / forward-backward
# split, peak CUDA memory of each path, and the log-prob / gradient diffs shared vs TRL on one batch.
#   bash benchmarks/gpu_grpo.sh                  # ~5-8 minutes on an H100 (estimate: not run yet)
#   CPU=1 bash benchmarks/gpu_grpo.sh            # the same script at CPU size (tiny model, 2 images of 112 px)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$(test -x .venv/bin/python && echo .venv/bin/python || echo python)}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [[ "${CPU:-0}" == 1 ]]; then
  exec "$PY" benchmarks/bench_grpo.py --size tiny --images 2 --image-size 112 --generations 4 --completion-length 16 \
    --prompts 2 --steps 1 --work "$WORK" --json "${OUT:-$WORK/bench_grpo_cpu_check.json}"
fi

"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
# Qwen2.5-VL-3B-Instruct's published architecture, derived from the shipped 7B config (same vision tower).
"$PY" - "$WORK/qwen2_5_vl_3b.json" <<'PYEOF'
import json, sys
cfg = json.load(open("configs/qwen2_5_vl_7b/model_config.json"))
cfg.pop("_comment", None)
cfg.update(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
           num_key_value_heads=2, max_window_layers=70, tie_word_embeddings=True, vocab_size=151936)
cfg["vision_config"]["out_hidden_size"] = 2048
json.dump(cfg, open(sys.argv[1], "w"), indent=1)
PYEOF
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" benchmarks/bench_grpo.py --model-config "$WORK/qwen2_5_vl_3b.json" --bf16 --gradient-checkpointing \
  --images 4 --image-size 768 --generations 8 --completion-length 128 --prompts 2 --steps 3 \
  --work "$WORK" --json "${OUT:-benchmarks/bench_grpo_gpu_3b.json}"
