"""``mirg pretrain``: train the tiny Qwen2.5-VL on single-image perception (referring grounding, listing,
counting) generated on the fly from MIG-Synth's renderer, then measure it and write ``OUT/final/``.

Resumable: rerun with ``--resume`` after an interruption (same ``--out``); the run continues at its last save.
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

HELP = "pretrain the tiny model on single-image perception (the CPU demo's base)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mirg.pretrain.model import SIZE_CHOICES
    from mirg.pretrain.tasks import UNIFORM_EXPR

    p.add_argument("--out", required=True, help="run folder (model/, state.pt, log.jsonl, final/)")
    p.add_argument(
        "--size", default="base-m8", choices=SIZE_CHOICES, help="architecture preset (default: base-m8)"
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--steps", type=int, help="train for N optimizer steps (reproducible)")
    g.add_argument(
        "--minutes", type=float, help="train for M minutes of training time (schedule follows time)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=6e-4, help="peak learning rate (AdamW; warmup then cosine)")
    p.add_argument(
        "--vision-steps",
        type=int,
        default=1500,
        help="first train the vision tower alone for N steps (a temporary box head; see docs)",
    )
    p.add_argument("--vision-lr", type=float, default=1e-3, help="learning rate of the vision stage")
    p.add_argument("--vision-batch-size", type=int, default=32, help="images per vision-stage step")
    p.add_argument(
        "--init",
        default=None,
        help="start from this checkpoint (e.g. an earlier run's final/) instead of random weights of --size",
    )
    p.add_argument(
        "--grow-text",
        type=_grow,
        default=None,
        metavar="WxL",
        help="widen/deepen the --init checkpoint's text model to hidden size W and L layers before training, "
        "so that it starts computing exactly the same answers (e.g. 256x3; see docs/pretraining.md)",
    )
    p.add_argument(
        "--grow-vision",
        type=int,
        default=None,
        metavar="BLOCKS",
        help="deepen the --init checkpoint's vision tower to BLOCKS blocks (identity blocks, full attention) "
        "before training; it starts computing exactly the same tokens",
    )
    p.add_argument(
        "--new-vision",
        default=None,
        metavar="SIZE",
        help="replace the --init checkpoint's vision tower + merger by a freshly initialised one of preset SIZE "
        "(e.g. base-m4: 4 x 4 tokens at 224 px), keeping its text model; follow with --vision-steps",
    )
    p.add_argument(
        "--rope-theta",
        type=float,
        default=None,
        metavar="THETA",
        help="set the text model's RoPE base before training (default: the checkpoint's or preset's; 10000 for "
        "every preset but base-r10). Changes the LLM's positions, so it must relearn them; see docs/pretraining.md",
    )
    p.add_argument(
        "--freeze-vision",
        action="store_true",
        help="the LLM stage trains the text model only; the vision tower + merger keep the weights the vision "
        "stage (or --init) gave them",
    )
    p.add_argument(
        "--vision-aux",
        type=float,
        default=0.0,
        metavar="W",
        help="keep the vision head's loss (--vision-head) on in the LLM stage with weight W (the head carries "
        "over), so that the LM loss does not wear the image tokens down (default 0: off; see docs/pretraining.md)",
    )
    p.add_argument(
        "--attn-aux",
        type=float,
        default=0.0,
        metavar="W",
        help="supervise the LLM's last-layer attention with weight W: at every box digit of a referring answer, "
        "its heads' image attention should fall on the token of the named object's cell (default 0: off; the "
        "text model then runs with eager attention; see docs/pretraining.md)",
    )
    p.add_argument(
        "--attn-aux-heads",
        type=_heads,
        default=(),
        metavar="H[,H...]",
        help="supervise only these heads of the last layer with --attn-aux (e.g. 3, the binding head "
        "benchmarks/attn_probe.py finds; default: all heads)",
    )
    p.add_argument(
        "--attn-aux-at",
        choices=("box", "first"),
        default="box",
        help="where --attn-aux supervises: at every digit of the box (default) or only where the answer writes "
        "its first digit, i.e. commits to an object",
    )
    p.add_argument(
        "--vision-head",
        choices=("cells", "readout", "readout-pos"),
        default="cells",
        help="the vision stage's temporary head: cells (per token: which attribute keys have an object in its "
        "cell, and their boxes) or readout (per attribute key: one attention layer reads the named object's box "
        "off the image's tokens, as the LLM must) or readout-pos (readout with each token's cell given, as the LLM "
        "has it from mRoPE); see docs/pretraining.md",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="px per side of the training and held-out images (default 112; one the processor does not resize)",
    )
    p.add_argument(
        "--max-objects",
        type=int,
        default=None,
        help="at most N objects per image in training and held-out data (default: 5, the curriculum's)",
    )
    p.add_argument(
        "--refer-turns",
        type=_turns,
        default=(1, 3),
        metavar="LO:HI",
        help="a referring sample asks about LO to HI distinct objects of its image, as a multi-turn chat "
        "(uniform, at most the objects there; N means N:N; default 1:3)",
    )
    p.add_argument(
        "--multi-image",
        type=float,
        default=0.0,
        metavar="FRAC",
        help="this fraction of the referring batches hold several images per sample: the named object is in one "
        "of them and the answer names its image (default 0: single images only; see docs/pretraining.md)",
    )
    p.add_argument(
        "--multi-images",
        type=_multi,
        default=(2, 3),
        metavar="LO:HI",
        help="images per multi-image sample, uniformly (default 2:3)",
    )
    p.add_argument(
        "--expr-weights",
        type=_expr_weights,
        default=UNIFORM_EXPR,
        metavar="NAME=W,...",
        help="how a referring question picks among the attribute subsets that identify its object, by weight "
        "(names: shape, color, color+shape, size+shape, size+color, size+color+shape; unnamed ones weigh 1; "
        "default: uniformly). E.g. color=3,size+color=2 asks for colour more often; held-out data is unchanged",
    )
    p.add_argument(
        "--min-objects",
        type=int,
        default=1,
        help="at least N objects per image in the LLM stage's training data, in every curriculum stage (default 1; "
        "the vision stage and held-out data keep 1 to --max-objects)",
    )
    p.add_argument(
        "--describe",
        type=float,
        default=0.0,
        metavar="FRAC",
        help="this fraction of the LLM stage's batches asks for an object's full label instead of a box, given its "
        "box or a partial expression ('Describe the red object.'), training the attribute words both ways "
        "(default 0: off; held-out data is unchanged)",
    )
    p.add_argument("--warmup", type=int, default=100, help="warmup steps")
    p.add_argument(
        "--seed", type=int, default=0, help="model init and data seed (held-out data: seed + 1000003)"
    )
    p.add_argument("--eval-every", type=int, default=500, help="held-out metrics every N steps (0: never)")
    p.add_argument("--eval-samples", type=int, default=64, help="held-out samples for periodic metrics")
    p.add_argument(
        "--final-eval-samples", type=int, default=500, help="held-out samples for the final metrics"
    )
    p.add_argument("--migsynth-per-task", type=int, default=10,
                   help="MIG-Synth samples per task for the final multi-image scores (0: skip)")  # fmt: skip
    p.add_argument(
        "--save-minutes", type=float, default=3.0, help="save a resumable checkpoint every M minutes"
    )
    p.add_argument("--log-every", type=int, default=25, help="progress line every N steps")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes that build batches ahead (default: 0 on CPU, up to 8 on CUDA; needs --steps); "
                        "the data is the same for any value")  # fmt: skip


def _grow(text: str) -> tuple[int, int]:
    from mirg.pretrain.grow import parse_grow

    try:
        return parse_grow(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _turns(text: str) -> tuple[int, int]:
    """``LO:HI`` or ``N`` (= ``N:N``) for ``--refer-turns``."""
    lo, _, hi = text.partition(":")
    try:
        turns = (int(lo), int(hi or lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI or N, got {text!r}") from None
    if not 1 <= turns[0] <= turns[1]:
        raise argparse.ArgumentTypeError(f"expected 1 <= LO <= HI, got {text!r}")
    return turns


def _multi(text: str) -> tuple[int, int]:
    """``LO:HI`` or ``N`` for ``--multi-images`` (2 <= LO <= HI <= 6)."""
    lo, hi = _turns(text)
    if not 2 <= lo <= hi <= 6:
        raise argparse.ArgumentTypeError(f"expected 2 <= LO <= HI <= 6, got {text!r}")
    return lo, hi


def _expr_weights(text: str) -> tuple[float, ...]:
    """``NAME=W[,NAME=W...]`` for ``--expr-weights``: a weight per :data:`~mirg.pretrain.tasks.EXPR_NAMES` entry
    (unnamed: 1)."""
    from mirg.pretrain.tasks import EXPR_NAMES, UNIFORM_EXPR

    weights = dict(zip(EXPR_NAMES, UNIFORM_EXPR, strict=True))
    for part in filter(None, text.split(",")):
        name, _, w = part.partition("=")
        if name.strip() not in weights:
            raise argparse.ArgumentTypeError(
                f"unknown attribute subset {name!r}; one of {', '.join(EXPR_NAMES)}"
            )
        try:
            weights[name.strip()] = float(w)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT, got {part!r}") from None
        if not weights[name.strip()] > 0:
            raise argparse.ArgumentTypeError(f"weights must be positive, got {part!r}")
    return tuple(weights.values())


def _heads(text: str) -> tuple[int, ...]:
    try:
        heads = tuple(int(h) for h in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected head indices like 3 or 2,3, got {text!r}") from None
    if any(h < 0 for h in heads) or len(set(heads)) != len(heads):
        raise argparse.ArgumentTypeError(f"expected distinct head indices from 0, got {text!r}")
    return heads


def _config(args: argparse.Namespace) -> Any:
    from mirg.pretrain.loop import PretrainConfig

    return PretrainConfig(
        out=str(args.out), size=args.size, steps=args.steps, minutes=args.minutes, batch_size=args.batch_size,
        lr=args.lr, warmup=args.warmup, seed=args.seed, eval_every=args.eval_every,
        eval_samples=args.eval_samples, final_eval_samples=args.final_eval_samples,
        save_minutes=args.save_minutes, log_every=args.log_every, threads=args.threads, device=args.device,
        vision_steps=args.vision_steps, vision_lr=args.vision_lr, vision_batch_size=args.vision_batch_size,
        max_objects=args.max_objects, init=args.init, image_size=args.image_size, workers=args.workers,
        refer_turns=args.refer_turns, grow_text=args.grow_text, grow_vision=args.grow_vision,
        new_vision=args.new_vision, rope_theta=args.rope_theta,
        freeze_vision=args.freeze_vision, vision_aux=args.vision_aux,
        vision_head=args.vision_head, attn_aux=args.attn_aux, attn_heads=args.attn_aux_heads, attn_at=args.attn_aux_at, multi_image=args.multi_image,
        multi_images=args.multi_images, min_objects=args.min_objects, expr_weights=args.expr_weights,
        describe=args.describe,
    )  # fmt: skip


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


def finalize(trainer: Any, command: str, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """Write OUT/final: the checkpoint, held-out metrics (both prompt styles), MIG-Synth scores, model card."""
    import shutil

    from mirg.models.tiny import count_parameters
    from mirg.pretrain.loop import HELDOUT_SEED_OFFSET, code_version, hardware
    from mirg.pretrain.metrics import evaluate_refer, mean_box_baseline
    from mirg.pretrain.tasks import heldout_multi, heldout_refer

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
    if cfg.describe:
        from mirg.pretrain.metrics import evaluate_describe
        from mirg.pretrain.tasks import heldout_describe

        m = evaluate_describe(
            trainer.model, trainer.processor, heldout_describe(seed, cfg.final_eval_samples, cfg.data)
        )
        metrics["describe"] = m
        log(f"final held-out describe ({m['n']}): exact label {m['acc']:.3f} colour {m['color']:.3f} "
            f"shape {m['shape']:.3f} size {m['size']:.3f} by question {m['by_question']}")  # fmt: skip
    if args.migsynth_per_task > 0:
        ms = migsynth_scores(final, Path(cfg.out), args.migsynth_per_task, cfg.seed + 2 * HELDOUT_SEED_OFFSET,
                             log, image_size=cfg.data.image_sizes[0])  # fmt: skip
        metrics["migsynth"] = {**ms, "image_size": cfg.data.image_sizes[0]}
    metrics["parameters"] = count_parameters(final)
    metrics["hardware"] = hardware()
    metrics["command"] = command
    metrics["code"] = trainer.state.get("code") or code_version()
    metrics["lineage"] = trainer.state.get("lineage") or []
    metrics["config"] = trainer.state.get("config")
    (final / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    from mirg.pretrain.card import model_card

    (final / "MODEL_CARD.md").write_text(model_card(metrics, trainer.state), encoding="utf-8")
    log(f"wrote {final}")
    return metrics


def run(args: argparse.Namespace) -> int:
    from mirg.pretrain.loop import Trainer

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    out = Path(args.out)
    if args.resume and not (out / "state.pt").is_file():
        if out.exists() and any(out.iterdir()):
            raise MirgError(f"--resume: {out} holds no saved run (state.pt missing)")
        log(f"--resume: nothing saved in {out} yet; starting a new run")
    argv = sys.argv[2:] if sys.argv[1:2] == ["pretrain"] else sys.argv[1:]
    command = " ".join(["mirg pretrain", *(shlex.quote(a) for a in argv)])
    trainer = Trainer(_config(args), resume=args.resume, log=log)
    trainer.train()
    finalize(trainer, command, args, log)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mirg pretrain", description=HELP)
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except MirgError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
