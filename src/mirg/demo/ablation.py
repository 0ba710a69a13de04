"""``mirg demo --ablation``: SFT only, RL only (from the base), SFT + RL with the object-only reward and SFT + RL
with the dual image-gated reward (MIRG-RL), each over training seeds ``seed, seed+1, ...`` on the same data.
The demo's own seed reuses the main run's SFT, SFT+RL and evaluations."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mirg.demo.settings import DemoSettings
from mirg.demo.stages import metrics_average

DUAL_REWARD: dict[str, Any] = {"w_format": 1.0, "w_image": 1.0, "w_object": 1.0, "gated": True}
OBJECT_REWARD: dict[str, Any] = {"w_format": 1.0, "w_image": 0.0, "w_object": 1.0, "gated": False}
VARIANTS = {  # ablation variant -> label
    "sft_only": "SFT only",
    "rl_only": "RL only (from base)",
    "sft_rl_object": "SFT + RL, object-only reward",
    "sft_rl_dual": "SFT + RL, dual image-gated reward (MIRG-RL)",
}


def ablation_seeds(s: DemoSettings) -> list[int]:
    return [s.seed + k for k in range(s.ablation_seeds)]


def ablation_plan(s: DemoSettings, p: dict[str, float]) -> list[tuple[str, float]]:
    """The ablation's stages in the order they run, with their prior costs ``p`` (see demo.progress.priors)."""
    own = [("sft", "sft"), ("rl sft_rl_dual", "rl"), ("eval sft", "eval"), ("eval sft_rl_dual", "eval")]
    every = [(f"{kind} {v}", kind) for v in ("rl_only", "sft_rl_object") for kind in ("rl", "eval")]
    return [
        (f"ablation seed {seed}: {name}", p[kind])
        for seed in ablation_seeds(s)
        for name, kind in (own if seed != s.seed else []) + every
    ]


def run_ablation(
    out: Path,
    s: DemoSettings,
    base_dir: Path,
    train_pair: Callable[[Path, int, str], tuple[Path, Path]],
    train_rl: Callable[[str, Path, Path, int, dict[str, Any]], None],
    eval_model: Callable[[str, Path, Path], None],
) -> dict[str, Any]:
    """Run (or resume) every variant at every seed with the pipeline's own stage runners; writes and returns
    ``out/ablation/results.json`` ({seeds, variants: {name: {label, runs: [{seed, average, eval_dir}]}}}; each
    ``eval_dir`` relative to ``out``)."""
    variants: dict[str, Any] = {v: {"label": label, "runs": []} for v, label in VARIANTS.items()}
    for seed in ablation_seeds(s):
        root = out / "ablation" / f"seed-{seed}"
        label = f"ablation seed {seed}: "
        if seed == s.seed:
            seed_sft = out / "sft"
            evals = {"sft_only": out / "eval" / "sft", "sft_rl_dual": out / "eval" / "rl"}
        else:
            seed_sft, seed_rl = train_pair(root, seed, label)
            evals = {"sft_only": root / "eval" / "sft_only", "sft_rl_dual": root / "eval" / "sft_rl_dual"}
            eval_model(f"{label}eval sft", evals["sft_only"], seed_sft)
            eval_model(f"{label}eval sft_rl_dual", evals["sft_rl_dual"], seed_rl)
        rl_runs = (("rl_only", base_dir, DUAL_REWARD), ("sft_rl_object", seed_sft, OBJECT_REWARD))
        for v, start, reward in rl_runs:
            train_rl(f"{label}rl {v}", root / v, start, seed, reward)
            evals[v] = root / "eval" / v
            eval_model(f"{label}eval {v}", evals[v], root / v)
        for v, folder in evals.items():
            run = {"seed": seed, "average": metrics_average(folder), "eval_dir": str(folder.relative_to(out))}
            variants[v]["runs"].append(run)
    results = {"seeds": ablation_seeds(s), "variants": variants}
    (out / "ablation" / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return results
