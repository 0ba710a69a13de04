"""The demo, top to bottom: MIG-Synth (train and test, disjoint seeds) -> template trajectories -> SFT -> GRPO
with the dual reward -> greedy evaluation of base, SFT and SFT+RL -> report (and ``--ablation``). Each stage
writes one folder under ``OUT`` and is skipped on a rerun whose settings and inputs match (demo.stages).

Layout of ``OUT``::

    data/train, data/test     MIG-Synth (disjoint seeds)          base/    the random base (fallback only)
    traj/                     template trajectories (SFT set)      sft/, rl/   trained models + metrics.jsonl
    eval/{base,sft,rl}/       predictions.jsonl, metrics.json       ablation/   --ablation runs and results.json
    demo.json                 settings, base model, stage times     report.md, report.html, plots/, gallery/
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mirg.demo import settings as demo_settings
from mirg.demo.ablation import ablation_plan, run_ablation
from mirg.demo.progress import Progress, fmt_seconds, model_cost_scale, priors
from mirg.demo.settings import NO_BASE_WARNING, DemoSettings, base_grounding, resolve_base
from mirg.demo.stages import (
    eval_stage,
    metrics_average,
    model_id,
    read_marker,
    rl_stage,
    run_stage,
    sft_stage,
    split_overlap,
    synth_stage,
    trajectories_stage,
)
from mirg.outputs import file_fingerprint

# the stages whose times demo.json records, in its order (the RL split and the validation runs when made)
TIMED = ("data", "trajectories", "sft", "rl", "eval base", "eval sft", "eval sft+rl")
TIMED += ("data rl", "eval val sft", "eval val sft+rl")


def plan_stages(s: DemoSettings, ablation: bool, scale: float = 1.0) -> list[tuple[str, float]]:
    p = priors(s, scale)
    plan = [("data", p["data"])]
    plan += [("data rl", p["data"])] if s.rl_per_task else []
    plan += [("data val", p["data"])] if s.val_per_task else []
    plan += [("base model", 3.0), ("trajectories", p["trajectories"]), ("sft", p["sft"]),
             ("rl", p["rl"]), ("eval base", p["eval"]), ("eval sft", p["eval"]), ("eval sft+rl", p["eval"])]  # fmt: skip
    if s.val_per_task:
        val = p["eval"] * s.val_per_task / s.test_per_task
        plan += [("eval val sft", val), ("eval val sft+rl", val)]
    if ablation:
        plan += ablation_plan(s, p)
    return [*plan, ("report", 5.0)]


def run_demo(
    out: str | Path,
    settings: DemoSettings | None = None,
    *,
    base: str | Path | None = None,
    ablation: bool = False,
    stream: Any = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the demo into ``out``; returns the run summary (also ``out/demo.json``). ``out`` is locked
    for the run: a second demo into it stops with one line naming the holder."""
    from mirg.outputs import check_out_dir, locked
    from mirg.training.stage_cli import setup_logging

    out = check_out_dir(out)
    with locked(out):
        setup_logging()
        base_dir, base_source = resolve_base(base, demo_settings.SHIPPED_BASE)
        s = (settings or DemoSettings()).for_base(base_dir)
        progress = Progress(plan_stages(s, ablation, model_cost_scale(base_dir, s.image_size)), stream)
        t_start = time.perf_counter()

        warning = NO_BASE_WARNING if base_dir is None else None
        if warning:
            progress.say(f"WARNING: {warning} (pass --base with a pretrained tiny base; see lab/README.md)")
        progress.say(f"settings: {json.dumps(asdict(s))}")
        progress.say(
            f"{len(progress.plan)} stages, ~{fmt_seconds(progress.left())} estimated for 2 CPU cores"
        )
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        progress.say(f"device: {device}; base model: {base_dir or 'random tiny model'} ({base_source})")
        folders: dict[str, Path] = {}

        def stage(name: str, folder: Path, *args: Any) -> None:
            """:func:`run_stage`, noting the stage's folder for the stage times in demo.json."""
            folders[name] = folder
            run_stage(progress, name, folder, *args)

        # 1. data: MIG-Synth train (the SFT split) and test from disjoint seeds; with rl_per_task or
        #    val_per_task also an RL split or a validation split, each with a seed of its own
        data_key, seeds = s.data_digest(), s.data_seeds()
        train, test = out / "data" / "train", out / "data" / "test"

        def data_work() -> dict[str, Any]:
            synth_stage(train, s, seeds["train"], s.train_per_task)
            synth_stage(test, s, seeds["test"], s.test_per_task)
            return {"train_seed": seeds["train"], "test_seed": seeds["test"]}

        stage("data", out / "data", {**data_key, "n": [s.train_per_task, s.test_per_task]},
              ["train/samples.jsonl", "test/samples.jsonl"], data_work)  # fmt: skip
        train_samples, test_samples = train / "samples.jsonl", test / "samples.jsonl"

        def extra_split(name: str, n: int) -> Path:
            folder, seed = out / "data" / name, seeds[name]
            stage(f"data {name}", folder, {**data_key, "n": n, "seed": seed}, ["samples.jsonl"],
                  lambda: synth_stage(folder, s, seed, n) or {"seed": seed})  # fmt: skip
            return folder / "samples.jsonl"

        # the RL and validation splits that are made
        splits = {
            name: extra_split(name, n) for name, n in (("rl", s.rl_per_task), ("val", s.val_per_task)) if n
        }
        rl_samples, val_samples = splits.get("rl", train_samples), splits.get("val")
        overlap = split_overlap(train, test, *(f.parent for f in splits.values())) if splits else None
        if overlap:
            progress.say(f"WARNING: {overlap} images are shared between the data splits")

        # 2. the base: the pretrained tiny base, or a random tiny model when none is found
        if base_dir is None:
            from mirg.models.tiny import build_tiny_model

            base_dir = out / "base"

            def base_work() -> None:  # into the empty folder run_stage made
                build_tiny_model(base_dir, size="tiny", seed=s.seed)

            stage("base model", base_dir, {"seed": s.seed, "kind": "random tiny"}, ["config.json"], base_work)
        else:
            progress.finish("base model", None, skipped=True, note=f"pretrained base {base_dir}")
        base_id = model_id(base_dir)

        # 3. trajectories (the SFT set)
        traj = out / "traj"
        stage("trajectories", traj, {"data": data_key, "n": s.train_per_task, "base": base_id,
              "reasoning": s.reasoning}, ["trajectories.jsonl"],
              lambda: trajectories_stage(traj, train_samples, base_dir, s.reasoning, s.seed))  # fmt: skip

        # 4-5. SFT, then GRPO with the dual reward from the SFT model. What a default run did not have joins
        # the keys only when set, so a default run keeps its fingerprints.
        frozen = s.digest(changed=("freeze_vision",))
        sft_key = {"traj": file_fingerprint(traj / "trajectories.jsonl"), "base": base_id,
                   **s.digest("sft_steps", "sft_batch_size", "sft_learning_rate"), **frozen}  # fmt: skip
        rl_key = s.digest("rl_steps", "rl_prompts_per_step", "num_generations", "rl_learning_rate",
                          "temperature", "max_completion_length", "train_per_task") | {"data": data_key}  # fmt: skip
        default_schedule = DemoSettings().rl_schedule()
        rl_key |= {k: v for k, v in s.rl_schedule().items() if v != default_schedule[k]} | frozen
        if "rl" in splits:
            rl_key["rl_data"] = {"n": s.rl_per_task, "seed": seeds["rl"]}
        eval_key = {"data": data_key, **s.digest("test_per_task", "eval_max_new_tokens")}

        def train_rl(name: str, folder: Path, start: Path, seed: int, reward: dict[str, Any]) -> None:
            key = {**rl_key, "seed": seed, "from": model_id(start), "reward": reward}
            stage(name, folder, key, ["model.safetensors"],
                  lambda: rl_stage(folder, start, rl_samples, s, seed, reward))  # fmt: skip

        def train_pair(root: Path, seed: int, label: str) -> tuple[Path, Path]:
            sft_dir, rl_dir = root / "sft", root / "rl"
            stage(f"{label}sft", sft_dir, {**sft_key, "seed": seed}, ["model.safetensors"],
                  lambda: sft_stage(sft_dir, base_dir, traj / "trajectories.jsonl", s, seed))  # fmt: skip
            train_rl(f"{label}rl" + (" sft_rl_dual" if label else ""), rl_dir, sft_dir, seed, s.rl_reward())
            return sft_dir, rl_dir

        def eval_model(
            name: str, folder: Path, model: Path, samples: Path = test_samples, key: dict[str, Any] = eval_key
        ) -> None:
            stage(name, folder, {**key, "model": model_id(model)}, ["metrics.json"],
                  lambda: eval_stage(folder, model, samples, s))  # fmt: skip

        sft_dir, rl_dir = train_pair(out, s.seed, "")

        # 6. greedy evaluation of the three stages on the held-out test set
        eval_model("eval base", out / "eval" / "base", base_dir)
        eval_model("eval sft", out / "eval" / "sft", sft_dir)
        eval_model("eval sft+rl", out / "eval" / "rl", rl_dir)

        # 6b. the validation split (val_per_task): SFT and SFT+RL, for choosing settings without the test set
        validation = None
        if val_samples is not None:
            val_key = {"data": data_key, "n": s.val_per_task, "seed": seeds["val"]}
            val_key |= s.digest("eval_max_new_tokens")
            eval_model("eval val sft", out / "eval_val" / "sft", sft_dir, val_samples, val_key)
            eval_model("eval val sft+rl", out / "eval_val" / "rl", rl_dir, val_samples, val_key)
            validation = {k: metrics_average(out / "eval_val" / k) for k in ("sft", "rl")}

        ablation_results = (
            run_ablation(out, s, base_dir, train_pair, train_rl, eval_model) if ablation else None
        )

        # 7. summary and report
        summary = {
            "settings": asdict(s),
            "base": {
                "path": str(base_dir),
                "source": base_source,
                "pretrained": warning is None,
                "single_image_refer": base_grounding(base_dir if warning is None else None),
            },
            "warning": warning,
            "data_seeds": seeds,
            "data_overlap_images": overlap,
            "validation": validation,
            "device": device,
            "ablation": ablation,
            "command": command,
            "stage_seconds": {
                name: read_marker(folders[name]).get("seconds") for name in TIMED if name in folders
            },
            "this_run_seconds": round(time.perf_counter() - t_start, 1),
        }
        (out / "demo.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")

        from mirg.demo.report import write_report

        t0 = progress.begin("report")
        paths = write_report(out, summary, ablation_results)
        progress.finish("report", t0)
        progress.say(f"wrote {paths['md']} and {paths['html']} in {fmt_seconds(progress.elapsed())}")
        summary["report"] = {k: str(v) for k, v in paths.items()}
        return summary
