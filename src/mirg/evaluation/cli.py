"""``mirg eval --model DIR --data SAMPLES.jsonl|BENCH.json --out OUT``: batched, resumable evaluation."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="local Qwen2.5-VL / Qwen2-VL checkpoint folder")
    p.add_argument("--data", required=True, help="Sample JSONL or MIG-Bench JSON")
    p.add_argument(
        "--image-root", help="folder the image paths are relative to (default: the data file's folder)"
    )
    p.add_argument("--out", required=True, help="output folder (predictions.jsonl, metrics.json, metrics.md)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generation batch (default 8)")
    p.add_argument("--limit", type=int, help="evaluate only the first N samples")
    p.add_argument(
        "--max-new-tokens", type=int, default=256, help="generation budget per sample (default 256)"
    )
    p.add_argument("--backend", choices=("auto", "transformers", "vllm"), default="auto",
                   help="auto: vLLM when installed and a GPU is present, else transformers")  # fmt: skip
    p.add_argument("--device", help="cuda / cpu (default: cuda when available)")
    p.add_argument("--dtype", help="bfloat16 / float16 / float32 (default: bf16 on GPU, fp32 on CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="start --out afresh (a run resumes only when model, data and settings match)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from mirg.evaluation.runner import evaluate
    from mirg.scoring import format_table

    metrics = evaluate(
        args.model,
        args.data,
        args.out,
        image_root=args.image_root,
        batch_size=args.batch_size,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    print(format_table(metrics))
    run_info = metrics["run"]
    rate = run_info["samples_per_second"]
    print(
        f"{run_info['samples']} samples ({run_info['resumed']} resumed, {run_info['generated_this_run']} generated"
        + (f", {rate} samples/s" if rate else "")
        + f"); wrote {args.out}/predictions.jsonl, metrics.json, metrics.md"
    )
    return 0
