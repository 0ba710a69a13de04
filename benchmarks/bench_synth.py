"""MIG-Synth generation speed, one process: samples/s writing a dataset (PNG + JSONL) at the default settings,
plus per-task in-memory speed (no files).

    .venv/bin/python benchmarks/bench_synth.py --n-per-task 100 --repeats 3

Reports the best of ``--repeats`` runs (the machine is shared and noisy). Goal: >= 200 samples/s end to end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time

from mirg.synth import SYNTH_TASKS, SynthConfig, generate_dataset, generate_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-per-task", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=SynthConfig().image_size)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-task", action="store_true", help="also time each task in memory (no files)")
    args = ap.parse_args()
    config = SynthConfig(image_size=args.image_size)
    n_total = args.n_per_task * len(SYNTH_TASKS)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, image size {config.image_size} px, one process"
    )

    best = float("inf")
    n_images = 0
    for r in range(args.repeats):
        tmp = tempfile.mkdtemp(prefix="bench_synth_")
        try:
            t0 = time.perf_counter()
            samples = generate_dataset(tmp, args.n_per_task, args.seed + r, config=config, progress=False)
            dt = time.perf_counter() - t0
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        n_images = sum(s.num_images for s in samples)
        best = min(best, dt)
        print(
            f"  run {r + 1}: {n_total} samples ({n_images} images) in {dt:.2f} s = {n_total / dt:.0f} samples/s"
        )
    print(
        f"end to end (PNG + JSONL), best of {args.repeats}: {n_total / best:.0f} samples/s, {n_images / best:.0f} images/s"
    )

    if args.per_task:
        print("in memory, per task (samples/s):")
        for task in SYNTH_TASKS:
            t0 = time.perf_counter()
            for i in range(args.n_per_task):
                generate_sample(task, i, args.seed, config)
            dt = time.perf_counter() - t0
            print(f"  {task:16s} {args.n_per_task / dt:7.0f}")


if __name__ == "__main__":
    main()
