"""SFT steps with the batches prepared in the training process against one data-loader worker, same run.

``mirg sft`` runs in a subprocess per setting (TRL's ``SFTTrainer``; ``dataloader_num_workers`` 0, then ``--workers``),
alternating, ``--repeats`` times each, on one trajectory set: the demo's shape by default (MIG-Synth at 224 px,
2-3 images, compact reasoning, the shipped tiny base, batch 8, lr 5e-4). Each run's wall time covers the whole
command (start-up included, the same for both). The data order is the trainer's sampler in the main process, so
both settings train on the same batches: the script checks that their final weights are the same bytes.

    python benchmarks/bench_sft_workers.py --steps 60 --repeats 2 --json benchmarks/bench_sft_workers.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--traj", help="a trajectories.jsonl to train on (default: built here, the demo's shape)")
    p.add_argument("--model", help="checkpoint folder (default: the shipped tiny base)")
    p.add_argument("--per-task", type=int, default=16, help="MIG-Synth samples per task when building data")
    p.add_argument("--steps", type=int, default=60, help="SFT steps per run")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=1, help="data-loader workers of the compared setting")
    p.add_argument("--repeats", type=int, default=2, help="runs per setting, alternating")
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


def build_data(work: Path, model: Path, per_task: int) -> Path:
    from mirg.demo.settings import base_image_size
    from mirg.synth import SynthConfig, generate_dataset
    from mirg.trajectories import write_template_trajectories

    size = base_image_size(model) or 224
    generate_dataset(work / "data", per_task, seed=1, config=SynthConfig(image_size=size, images=(2, 3)),
                     overwrite=True, progress=False)  # fmt: skip
    write_template_trajectories(
        work / "data" / "samples.jsonl", work / "traj", model, seed=1, reasoning="compact"
    )
    return work / "traj" / "trajectories.jsonl"


def run_sft(traj: Path, model: Path, out: Path, steps: int, batch: int, workers: int) -> float:
    from mirg.demo.stages import stage_config

    cmd = [sys.executable, "-m", "mirg.cli", "sft", "--config", str(stage_config("sft")),
           "--model_name_or_path", str(model), "--train_file", str(traj), "--output_dir", str(out),
           "--max_steps", str(steps), "--per_device_train_batch_size", str(batch), "--learning_rate", "5e-4",
           "--save_strategy", "no", "--logging_steps", "10", "--disable_tqdm", "true",
           "--dataloader_num_workers", str(workers)]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(
        cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
    )
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    from mirg.demo.settings import SHIPPED_BASE

    model = Path(args.model) if args.model else SHIPPED_BASE
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        traj = Path(args.traj) if args.traj else build_data(work, model, args.per_task)
        seconds: dict[int, list[float]] = {0: [], args.workers: []}
        digests: dict[int, set[str]] = {0: set(), args.workers: set()}
        for r in range(args.repeats):
            for w in (0, args.workers):
                out = work / f"sft-w{w}-r{r}"
                seconds[w].append(run_sft(traj, model, out, args.steps, args.batch_size, w))
                digests[w].add(hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest())
                print(f"repeat {r}: workers {w}: {seconds[w][-1]:.1f} s", flush=True)
    base, alt = statistics.median(seconds[0]), statistics.median(seconds[args.workers])
    result = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "model": str(model),
        "traj": args.traj or f"built: MIG-Synth {args.per_task} per task, compact reasoning",
        "threads": os.cpu_count(),
        "seconds_workers_0": [round(s, 2) for s in seconds[0]],
        f"seconds_workers_{args.workers}": [round(s, 2) for s in seconds[args.workers]],
        "speedup_median": round(base / alt, 3),
        "same_weights": len(digests[0] | digests[args.workers]) == 1,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
