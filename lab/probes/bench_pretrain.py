"""Where a `python -m lab.tinybase` step spends its time: building the data versus the model's training step.

Measures, on this machine and the chosen device (CUDA when present):

* ``data``: one process rendering + collating a batch (``lab.tinybase.loop._llm_batch`` / ``_vision_batch``),
  ms per sample, and the bytes of the batch (what a data worker hands to the trainer);
* ``loader``: batches per second delivered by ``prefetched`` with 0 and with N worker processes;
* ``step``: the training step alone (forward + backward + AdamW) on one fixed batch, s per step; and the
  same for a referring batch of the last curriculum stage (1-5 objects) with ``--refer-turns`` questions per
  image, with the supervised answers per second (``refer_answers_per_s``), the figure that says what more
  turns per image cost.

The ratio ``loader N workers / step`` says whether a run is data-bound (< 1) or model-bound. Run with the
project's environment::

    python -m lab.probes.bench_pretrain --size base-m8 --image-size 224 --batch-size 128 --workers 8
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from functools import partial
from typing import Any


def _nbytes(batch: dict) -> int:
    return sum(v.element_size() * v.nelement() for v in batch.values() if hasattr(v, "nelement"))


def time_steps(model: Any, opt: Any, batch: dict, dev: Any, steps: int, warmup: int = 3) -> float:
    """Seconds per training step (forward + backward + optimizer) on one fixed ``batch``, after ``warmup``."""
    import torch

    def run(n: int) -> None:
        for _ in range(n):
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    run(warmup)
    t0 = time.perf_counter()
    run(steps)
    return (time.perf_counter() - t0) / steps


def profile(model: Any, proc: Any, data: Any, dev: Any, batch_size: int) -> None:
    """s/step at batch 16 and ``batch_size``, then the top ops of 3 profiled steps (host and device time)."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from lab.tinybase.batching import to_device
    from lab.tinybase.loop import _llm_batch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    for bs in (16, batch_size):
        b = to_device(proc, _llm_batch(proc, 0, bs, data, 1000, 5), dev)
        print(f"batch {bs}: {time_steps(model, opt, b, dev, 5):.4f} s/step", flush=True)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        time_steps(model, opt, b, dev, 3, warmup=0)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="base-m8")
    p.add_argument("--init", default=None, help="a checkpoint folder instead of a random --size model")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--batches", type=int, default=24, help="batches per loader measurement")
    p.add_argument("--steps", type=int, default=20, help="timed training steps")
    p.add_argument("--device", default=None)
    p.add_argument("--refer-turns", default="1:3", metavar="LO:HI",
                   help="questions per image of the referring batch (as python -m lab.tinybase --refer-turns)")  # fmt: skip
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--profile", action="store_true",
                   help="then s/step at batch 16 and at --batch-size, and a torch profile of 3 steps at --batch-size")  # fmt: skip
    a = p.parse_args()

    import torch

    from lab.tinybase.batching import collate, to_device
    from lab.tinybase.config import parse_turns
    from lab.tinybase.loop import _llm_batch, _vision_batch, prefetched
    from lab.tinybase.model import build_model_dir
    from lab.tinybase.perception import DataConfig, make_sample, perception_rng
    from mirg.models.loading import load_model

    init = a.init or str(build_model_dir(os.path.join(tempfile.mkdtemp(), "m"), a.size, 0))
    loaded = load_model(init, device=a.device, dtype="float32")
    model, proc = loaded.model, loaded.processor
    dev = model.device
    data = replace(
        DataConfig(), image_sizes=(a.image_size,), size_weights=(1.0,), refer_turns=parse_turns(a.refer_turns)
    )
    res: dict = {"device": str(dev), "cpus": os.cpu_count(), "batch_size": a.batch_size,
                 "image_size": a.image_size, "image_processor": type(proc.image_processor).__name__}  # fmt: skip
    fns = {"llm": partial(_llm_batch, proc, 0, a.batch_size, data, 1000),
           "vision": partial(_vision_batch, proc, 0, a.batch_size, data)}  # fmt: skip
    for name, fn in fns.items():
        fn(0)
        t0 = time.perf_counter()
        b = [fn(s) for s in range(1, 4)]
        res[f"{name}_data_ms_per_sample"] = round((time.perf_counter() - t0) / 3 / a.batch_size * 1e3, 2)
        res[f"{name}_batch_mb"] = round(_nbytes(b[0]) / 2**20, 1)
        for w in (0, a.workers):
            n = a.batches if w else 3
            it = prefetched(fn, 100, 100 + n + 2, w)
            next(it), next(it)  # workers started and warm
            t0 = time.perf_counter()
            for _ in range(n):
                x = next(it)
                x = to_device(proc, x, dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            res[f"{name}_loader_{w}w_batches_per_s"] = round(n / (time.perf_counter() - t0), 2)
            del it
        print(json.dumps(res), flush=True)
    batch = to_device(proc, fns["llm"](5), dev)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    res["llm_step_s"] = round(time_steps(model, opt, batch, dev, a.steps), 4)
    res["llm_steps_per_s"] = round(1 / res["llm_step_s"], 2)
    res["ratio_loader_over_step"] = round(
        res[f"llm_loader_{a.workers}w_batches_per_s"] / res["llm_steps_per_s"], 2
    )
    stage = data.stages[-1]
    refer = [make_sample(perception_rng(0, i), data, stage, "refer") for i in range(a.batch_size)]
    res["refer_turns"] = list(data.refer_turns)
    res["refer_answers_per_batch"] = sum(len(s.turns) for s in refer)
    res["refer_step_s"] = round(
        time_steps(model, opt, to_device(proc, collate(proc, refer), dev), dev, a.steps), 4
    )
    res["refer_answers_per_s"] = round(res["refer_answers_per_batch"] / res["refer_step_s"], 1)
    print(json.dumps(res), flush=True)
    if a.profile:
        profile(model, proc, data, dev, a.batch_size)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
