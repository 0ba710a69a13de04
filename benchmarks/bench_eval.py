"""Throughput of ``mirg eval`` (batched, length-grouped) against a one-sample-at-a-time loop.

The baseline is how the official MIG-Bench script runs: for each item, build the prompt, run the processor,
``generate``, decode. Both sides use the same model, prompts and greedy decoding, and must produce the same
predictions. Run (2-core CPU, about two minutes)::

    .venv/bin/python benchmarks/bench_eval.py --samples 200 --batch-size 16 --max-new-tokens 64

Writes a JSON report (``--report``) and prints a one-line summary. See docs/evaluation.md for recorded figures.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path


def make_samples(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` synthetic 1-3 image Samples (PIL shapes, sizes 60-230 px); the target holds the red ellipse."""
    from PIL import Image, ImageDraw

    from mirg.sample import Sample, write_samples

    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        k, paths, box = rng.randint(1, 3), [], None
        target = rng.randint(1, k)
        for j in range(1, k + 1):
            w, h = rng.randint(60, 230), rng.randint(60, 230)
            im = Image.new("RGB", (w, h), (245, 245, 240))
            bw, bh = rng.randint(w // 6, w // 2), rng.randint(h // 6, h // 2)
            x1, y1 = rng.randint(0, w - bw), rng.randint(0, h - bh)
            color = (220, 30, 30) if j == target else rng.choice([(30, 160, 60), (40, 70, 220)])
            ImageDraw.Draw(im).ellipse((x1, y1, x1 + bw, y1 + bh), fill=color)
            if j == target:
                box = (x1 / w, y1 / h, (x1 + bw) / w, (y1 + bh) / h)
            rel = f"images/{i:05d}_{j}.png"
            im.save(folder / rel)
            paths.append(rel)
        samples.append(Sample(id=f"b{i:05d}", task=["common_object", "spot_diff", "region"][i % 3], images=paths,
                              question="Which image shows the red circle? Locate it." + " Look closely." * (i % 4),
                              target_image=target, target_box=box, source="bench"))  # fmt: skip
    path = folder / "samples.jsonl"
    write_samples(samples, path)
    return path


def one_at_a_time(loaded, data: Path, max_new_tokens: int) -> tuple[dict[str, str], float]:
    """The official script's loop: one sample per generate call. Returns ({id: raw_output}, seconds)."""
    from mirg.evaluation.backends import Request, TransformersBackend
    from mirg.images import open_images
    from mirg.sample import read_samples

    backend = TransformersBackend(loaded, max_new_tokens=max_new_tokens)
    out = {}
    t0 = time.perf_counter()
    for s in read_samples(data):
        out[s.id] = backend.generate([Request(s, open_images(s.images, data.parent))])[0].text
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint folder (default: build the tiny model, seed 0)")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument(
        "--dtype", help="model dtype (default: fp32 on CPU); float64 makes ties bit-stable, see docs"
    )
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--report", default="benchmarks/bench_eval.json")
    args = ap.parse_args()

    import torch

    from mirg.evaluation.runner import evaluate
    from mirg.models.loading import load_model
    from mirg.models.tiny import build_tiny_model

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = Path(args.model) if args.model else build_tiny_model(tmp / "tiny", seed=0)
        data = make_samples(tmp / "data", args.samples)
        loaded = load_model(model_dir, dtype=args.dtype)
        # warm-up (first-call allocations) on a few samples, outside the timings
        evaluate(loaded, data, tmp / "warm", limit=4, batch_size=4, max_new_tokens=8, progress=False)

        baseline, t_base = one_at_a_time(loaded, data, args.max_new_tokens)
        t0 = time.perf_counter()
        evaluate(loaded, data, tmp / "eval", batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
        t_eval = time.perf_counter() - t0  # includes image checks, scoring and writing metrics
        preds = {json.loads(x)["id"]: json.loads(x)["raw_output"]
                 for x in (tmp / "eval" / "predictions.jsonl").read_text().splitlines()}  # fmt: skip
    same = preds == baseline
    report = {
        "samples": args.samples,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "threads": torch.get_num_threads(),
        "model": str(args.model or "tiny (built, seed 0)"),
        "dtype": str(loaded.dtype).replace("torch.", ""),
        "one_at_a_time_seconds": round(t_base, 2),
        "one_at_a_time_samples_per_s": round(args.samples / t_base, 2),
        "mirg_eval_seconds": round(t_eval, 2),
        "mirg_eval_samples_per_s": round(args.samples / t_eval, 2),
        "speedup": round(t_base / t_eval, 2),
        "same_predictions": same,
        "differing": sum(preds.get(k) != baseline[k] for k in baseline),
        "differing_ids": sorted(k for k in baseline if preds.get(k) != baseline[k])[:10],
    }
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report))
    print(
        f"one-at-a-time {report['one_at_a_time_samples_per_s']} samples/s, mirg eval "
        f"{report['mirg_eval_samples_per_s']} samples/s: {report['speedup']}x, same predictions: {same}"
    )
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
