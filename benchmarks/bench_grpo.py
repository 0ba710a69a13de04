"""Whole GRPO steps through TRL's path and mirg's shared-prompt path (issue 30), same seeds, one run.

Each path runs in its own subprocess (so peak memory is its own), times K steps after one warm-up step
(generation, scoring, forward, backward, optimizer), then the shared child checks exactness on one batch:
per-token log-probs and every gradient, shared vs TRL. Images are random-noise PNG-free PIL images of
``--image-size`` px, ``--images`` per prompt; completions are forced to ``--completion-length`` tokens
(``min_new_tokens``) so both paths do the same work.

    python benchmarks/bench_grpo.py --size small --images 4 --image-size 448 --generations 8 \\
        --completion-length 64 --prompts 2 --steps 2 --json benchmarks/bench_grpo_small.json
    python benchmarks/bench_grpo.py --size tiny --images 3 --image-size 224 --prompts 8 --generations 4 \\
        --completion-length 128 --steps 2 --json benchmarks/bench_grpo_demo.json      # the demo's RL setting
    # GPU: --model-config CONFIG.json --bf16 (random weights from a model config; benchmarks/gpu_grpo.sh)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUPPRESS = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", choices=["tiny", "small"], help="mirg's tiny builder preset")
    p.add_argument(
        "--model-config", help="a Qwen2.5-VL config.json: random weights of that architecture instead"
    )
    p.add_argument("--images", type=int, default=4, help="images per prompt")
    p.add_argument(
        "--image-size", type=int, default=448, help="px per side (the processor's max is raised to it)"
    )
    p.add_argument("--prompts", type=int, default=2, help="distinct prompts per step")
    p.add_argument("--generations", type=int, default=8, help="G, completions per prompt")
    p.add_argument("--completion-length", type=int, default=64)
    p.add_argument("--steps", type=int, default=2, help="timed steps (after one warm-up step)")
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--work", help="folder for the built model (default: a temporary one)")
    p.add_argument("--path", choices=["baseline", "shared"], help=argparse.SUPPRESS)  # child mode
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build(args: argparse.Namespace, work: Path):
    """(model, processor, dataset): the model from mirg's tiny builder (or random weights of --model-config)."""
    import datasets
    import numpy as np
    import torch
    from PIL import Image

    from mirg.models.tiny import build_tiny_model
    from mirg.training.modeling import _load_processor, model_class

    folder = work / f"model-{args.size}"
    if not (folder / "config.json").is_file():
        build_tiny_model(folder, size=args.size, seed=0)
    processor = _load_processor(str(folder))
    processor.tokenizer.padding_side = "left"
    ip = processor.image_processor
    ip.size = {"shortest_edge": 56 * 56, "longest_edge": args.image_size**2}
    for name, value in (("min_pixels", 56 * 56), ("max_pixels", args.image_size**2)):
        if hasattr(ip, name):
            setattr(ip, name, value)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    cls = model_class("qwen2_5_vl")
    if args.model_config:
        from transformers import AutoConfig

        tiny = json.loads((folder / "config.json").read_text())
        config = AutoConfig.from_pretrained(args.model_config)
        for key in ("bos_token_id", "eos_token_id", "pad_token_id", "image_token_id", "video_token_id",
                    "vision_start_token_id", "vision_end_token_id", "vision_token_id"):  # fmt: skip
            if key in tiny:
                setattr(config, key, tiny[key])
                setattr(config.get_text_config(), key, tiny[key])
        torch.manual_seed(0)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = cls._from_config(config, dtype=dtype, attn_implementation="sdpa")
    else:
        model = cls.from_pretrained(str(folder), dtype=dtype, attn_implementation="sdpa")
    rng = np.random.default_rng(args.seed)
    rows = []
    for i in range(args.prompts):
        px = [Image.fromarray(rng.integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8))
              for _ in range(args.images)]  # fmt: skip
        text = f"Which image shows the red circle, and where is it? Question {i}."
        content = [{"type": "image"} for _ in px] + [{"type": "text", "text": text}]
        rows.append({"prompt": [{"role": "user", "content": content}], "images": px})
    return model, processor, datasets.Dataset.from_list(rows)


def reward(completions, **kwargs):
    return [(sum(map(ord, str(c))) % 11) / 11 for c in completions]


def child(args: argparse.Namespace) -> dict:
    import resource

    import torch
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer.utils import use_adapter  # noqa: F401  (keeps TRL's import order identical in both paths)

    from mirg.training.grpo_shared import SharedPromptGRPOTrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    model, processor, ds = build(args, work)
    cuda = torch.cuda.is_available()
    G = args.generations
    config = GRPOConfig(
        output_dir=str(work / f"out-{args.path}"), per_device_train_batch_size=args.prompts * G, num_generations=G,
        max_completion_length=args.completion_length, max_steps=args.steps + 1, learning_rate=1e-5,
        beta=args.beta, temperature=1.0, use_cpu=not cuda, bf16=args.bf16, report_to="none", save_strategy="no",
        logging_steps=1, remove_unused_columns=False, seed=args.seed, disable_tqdm=True,
        gradient_checkpointing=args.gradient_checkpointing,
        generation_kwargs={"suppress_tokens": processor.tokenizer.convert_tokens_to_ids(SUPPRESS),
                           "min_new_tokens": args.completion_length},
    )  # fmt: skip
    cls = SharedPromptGRPOTrainer if args.path == "shared" else GRPOTrainer
    trainer = cls(
        model=model, reward_funcs=[reward], args=config, train_dataset=ds, processing_class=processor
    )
    spans: dict[str, list[float]] = {"step": [], "generation": [], "prepare": [], "train_step": []}

    def timed(name, fn):
        def run(*a, **k):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            out = fn(*a, **k)
            if cuda:
                torch.cuda.synchronize()
            spans[name].append(time.perf_counter() - t)
            return out

        return run

    prepare = trainer._prepare_inputs
    trainer._generate_single_turn = timed("generation", trainer._generate_single_turn)
    trainer._prepare_inputs = timed("prepare", trainer._prepare_inputs)
    trainer.training_step = timed("train_step", trainer.training_step)
    from transformers import TrainerCallback

    class Steps(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            spans["step"].append(time.perf_counter() - self.t)

    trainer.add_callback(Steps())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed_steps = slice(1, None)  # drop the warm-up step
    step = sum(spans["step"][timed_steps]) / args.steps
    gen = sum(spans["generation"][timed_steps]) / args.steps
    prep = sum(spans["prepare"][timed_steps]) / args.steps
    fb = (
        sum(spans["train_step"][timed_steps]) / args.steps - prep
    )  # training_step = _prepare_inputs + fwd + bwd
    result = {
        "step_s": step, "generation_s": gen, "scoring_s": prep - gen, "forward_backward_s": fb,
        "optimizer_and_rest_s": step - prep - fb, "steps_s": spans["step"],
        "peak_memory_mb": (torch.cuda.max_memory_allocated() / 2**20 if cuda
                           else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_memory_kind": "cuda max_memory_allocated" if cuda else "process max RSS",
    }  # fmt: skip
    if args.path == "shared":
        result.update(exactness(trainer, prepare))
    return result


def exactness(trainer, prepare) -> dict:
    """Shared vs TRL on one fresh generation batch: max |log-prob diff|, max relative gradient diff."""
    import torch

    trainer.model.train()
    trainer._step, trainer._buffered_inputs = 0, None
    inputs = prepare(next(iter(trainer.get_train_dataloader())))
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    mm = {k: inputs.get(k) for k in ("pixel_values", "image_grid_thw", "num_images", "mm_token_type_ids")}
    lps, grads = [], []
    for shared in (False, True):
        trainer.share_prompt = shared
        with torch.no_grad():
            lp = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, inputs["completion_ids"].size(1),
                                                            **mm)[0]  # fmt: skip
        lps.append(lp.float())
        trainer.model.zero_grad(set_to_none=True)
        trainer.compute_loss(trainer.model, inputs).backward()
        grads.append(
            {n: p.grad.float().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        )
    a, b = grads
    rel = max(float((a[n] - b[n]).abs().max() / a[n].abs().max()) for n in a if a[n].abs().max() > 0)
    return {"max_abs_logprob_diff": float((lps[0] - lps[1]).abs().max()), "max_rel_grad_diff": rel,
            "prompt_tokens": int(inputs["prompt_mask"].sum(1).max())}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.path:
        Path(args.out).write_text(json.dumps(child(args)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = {}
        for path in ("baseline", "shared"):
            out = work / f"{path}.json"
            cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--path", path,
                   "--out", str(out), "--work", str(work)]  # fmt: skip
            t = time.perf_counter()
            subprocess.run(cmd, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            runs[path] = {**json.loads(out.read_text()), "wall_s": time.perf_counter() - t}
            print(f"{path}: {runs[path]['step_s']:.2f} s/step", flush=True)
    base, shared = runs["baseline"], runs["shared"]
    result = {
        "command": "python benchmarks/bench_grpo.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("path", "out", "work", "json")},
        "prompt_tokens": shared.pop("prompt_tokens"),  # the longest prompt, image tokens included
        "baseline_step_s": base["step_s"], "shared_step_s": shared["step_s"],
        "ratio": shared["step_s"] / base["step_s"],
        "forward_backward_ratio": shared["forward_backward_s"] / base["forward_backward_s"],
        "generation_ratio": shared["generation_s"] / base["generation_s"],
        "max_abs_logprob_diff": shared.pop("max_abs_logprob_diff"),
        "max_rel_grad_diff": shared.pop("max_rel_grad_diff"),
        "baseline": base, "shared": shared,
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_end": os.getloadavg()[0]},
    }  # fmt: skip
    try:
        import torch

        if torch.cuda.is_available():
            result["machine"]["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    print(json.dumps({k: result[k] for k in ("baseline_step_s", "shared_step_s", "ratio", "forward_backward_ratio",
                                             "generation_ratio", "max_abs_logprob_diff", "max_rel_grad_diff")},
                     indent=1))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
