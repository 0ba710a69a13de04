"""``python -m lab.tinybase``: pretrain the tiny Qwen2.5-VL on perception (referring grounding, listing, counting)
generated on the fly from MIG-Synth's renderer, then measure it and write ``OUT/final/`` with its card.

Options are the fields of :class:`~lab.tinybase.config.PretrainConfig` (``--max-objects 3`` or ``--max_objects 3``),
from a YAML ``--config`` file and the command line. Resumable: rerun with ``--resume`` after an interruption (same
``--out``); the run continues at its last save.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mirg.errors import MirgError

PROG = "python -m lab.tinybase"
HELP = "pretrain the tiny model on perception (the CPU demo's base)"


def migsynth_scores(
    model_dir: Path, work: Path, per_task: int, seed: int, log: Any, image_size: int = 112
) -> dict[str, Any]:
    """Multi-image MIG-Synth scores of a checkpoint (all tasks, images of the size it was trained on, seed
    distinct from training)."""
    from mirg.evaluation.runner import evaluate
    from mirg.synth import SynthConfig, generate_dataset

    data = work / f"migsynth_{image_size}px"
    if not (data / "samples.jsonl").exists():
        generate_dataset(data, n_per_task=per_task, seed=seed, config=SynthConfig(image_size=image_size))
    jsonl = next(iter(sorted(data.glob("*.jsonl"))))
    log(f"MIG-Synth multi-image evaluation on {jsonl} ...")
    return evaluate(str(model_dir), jsonl, work / f"migsynth_eval_{image_size}px", batch_size=16, max_new_tokens=96,
                    progress=False)  # fmt: skip


def finalize(trainer: Any, command: str, log: Any) -> dict[str, Any]:
    """Write OUT/final: the checkpoint, held-out metrics (both prompt styles), MIG-Synth scores, model card."""
    import shutil

    from lab.tinybase.data import heldout_multi, heldout_refer
    from lab.tinybase.evaluate import evaluate_refer, mean_box_baseline
    from lab.tinybase.loop import HELDOUT_SEED_OFFSET, code_version, hardware
    from mirg.models.tiny import count_parameters

    cfg = trainer.cfg
    final = Path(cfg.out) / "final"
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(Path(cfg.out) / "model", final)
    trainer.save_vision_head(final)
    metrics: dict[str, Any] = {
        "step": trainer.state["step"],
        "train_seconds": round(trainer.state["elapsed"], 1),
    }
    seed = cfg.seed + HELDOUT_SEED_OFFSET
    for style, frac in (("short_prompt", 0.0), ("mirg_prompt", 1.0)):
        samples = heldout_refer(seed, cfg.final_eval_samples, replace(cfg.data, mirg_prompt=frac))
        t0 = time.perf_counter()
        m = evaluate_refer(trainer.model, trainer.processor, samples)
        m["seconds"] = round(time.perf_counter() - t0, 1)
        metrics[f"refer_{style}"] = m
        if style == "short_prompt":
            metrics["refer_mean_box_baseline"] = mean_box_baseline(samples)
        log(f"final held-out refer, {style} ({m['n']}): Acc@0.5 {m['acc@0.5']:.3f} mean IoU {m['mean_iou']:.3f} "
            f"format {m['format']:.3f} other object {m['other_object@0.5']:.3f} "
            f"by objects {m['acc@0.5_by_objects']} by expression {m.get('acc@0.5_by_expression', {})}")  # fmt: skip
    samples = heldout_multi(seed, cfg.final_eval_samples, replace(cfg.data, mirg_prompt=1.0))
    t0 = time.perf_counter()
    m = evaluate_refer(trainer.model, trainer.processor, samples)
    m["seconds"] = round(time.perf_counter() - t0, 1)
    metrics["refer_multi_image"] = m
    log(
        f"final held-out multi-image refer (2-3 images, mirg prompt, {m['n']}): Acc@0.5 {m['acc@0.5']:.3f} "
        f"image {m['image_acc']:.3f} by place of the target {m['acc@0.5_by_place']}"
    )
    if cfg.migsynth_per_task > 0:
        ms = migsynth_scores(final, Path(cfg.out), cfg.migsynth_per_task, cfg.seed + 2 * HELDOUT_SEED_OFFSET,
                             log, image_size=cfg.data.image_sizes[0])  # fmt: skip
        metrics["migsynth"] = {**ms, "image_size": cfg.data.image_sizes[0]}
    metrics["parameters"] = count_parameters(final)
    metrics["hardware"] = hardware()
    metrics["command"] = command
    metrics["code"] = trainer.state.get("code") or code_version()
    metrics["lineage"] = trainer.state.get("lineage") or []
    metrics["config"] = trainer.state.get("config")
    (final / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    from lab.tinybase.card import model_card

    (final / "MODEL_CARD.md").write_text(model_card(metrics, trainer.state), encoding="utf-8")
    log(f"wrote {final}")
    return metrics


def run(cfg: Any, resume: bool, command: str) -> int:
    from lab.tinybase.loop import Trainer

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    out = Path(cfg.out)
    if resume and not (out / "state.pt").is_file():
        if out.exists() and any(out.iterdir()):
            raise MirgError(f"--resume: {out} holds no saved run (state.pt missing)")
        log(f"--resume: nothing saved in {out} yet; starting a new run")
    trainer = Trainer(cfg, resume=resume, log=log)
    trainer.train()
    finalize(trainer, command, log)
    return 0


def main(argv: list[str] | None = None) -> int:
    from lab.tinybase.config import PretrainConfig, parse
    from mirg.training.config import stage_help

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog=PROG, description=HELP, allow_abbrev=False, add_help=False)
    p.add_argument(
        "--config", metavar="CFG.yaml", help="YAML file of option: value (the command line overrides it)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("-h", "--help", action="store_true", help="show every option and exit")
    args, overrides = p.parse_known_args(argv)
    if args.help:
        options = stage_help([PretrainConfig], PROG)
        print(
            p.format_help()
            + "\nrun "
            + options[options.index("options:") :].replace("  -h, --help", "  --help", 1)
        )
        return 0
    try:
        cfg = parse(args.config, overrides)
        return run(cfg, args.resume, " ".join([PROG, *(shlex.quote(a) for a in argv)]))
    except MirgError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
