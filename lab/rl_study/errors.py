"""Where an evaluation's answers miss: per answer, one outcome, read with the product's scorer and the samples'
object boxes. For the RL study: does GRPO miss on the image, on the object (a box on another object of the right
image), or on the box's fit (the right object at IoU < 0.5)?

    python -m lab.rl_study.errors RUN/eval_val/sft RUN/eval_val/rl --samples RUN/data/val/samples.jsonl

Outcomes: ``hit`` (right image, IoU >= 0.5); ``no answer``; ``wrong image``; ``other object`` (right image, the box
overlaps another object of that image more than the target); ``loose`` (right image, 0.25 <= IoU < 0.5);
``off`` (right image, IoU < 0.25, no other object closer). Also the IoU quartiles of right-image answers.

A second table reads the reasoning: which object the line before the answer names (compact reasoning: "Target:
the large green cross at the bottom."). ``target``: the target's description (size, colour, shape, as the
template writes it); ``another``: another annotated object of the sample; ``none``: no object of the sample
(a description the model made up); ``... hit``: of those, answers that hit the target; ``another boxed``: answers
naming another object whose box is on that object (IoU >= 0.5); and how often the target's size, colour and shape
words appear in the line.
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path

from mirg.boxes import iou
from mirg.predictions import load_predictions
from mirg.sample import read_samples
from mirg.scoring import score_items
from mirg.trajectories.describe import describe, target_object

OUTCOMES = ("hit", "loose", "off", "other object", "wrong image", "no answer")


def outcomes(eval_dir: Path, samples_path: Path) -> tuple[Counter[str], list[float]]:
    samples = read_samples(samples_path)
    preds = load_predictions(eval_dir / "predictions.jsonl", samples)
    items = score_items(samples, preds, "mirg")
    by_id = {s.id: s for s in samples}
    count: Counter[str] = Counter()
    ious: list[float] = []
    for it in items:
        s = by_id[it.id]
        if it.pred_image is None or it.pred_box is None:
            count["no answer"] += 1
            continue
        if it.pred_image != s.target_image:
            count["wrong image"] += 1
            continue
        v = iou(it.pred_box, s.target_box)
        ious.append(v)
        per_image = s.objects[s.target_image - 1] if s.objects else []
        others = [iou(it.pred_box, o.box) for o in per_image if tuple(o.box) != tuple(s.target_box)]
        if v >= 0.5:
            count["hit"] += 1
        elif others and max(others) > v:
            count["other object"] += 1
        elif v >= 0.25:
            count["loose"] += 1
        else:
            count["off"] += 1
    return count, ious


NAMING = ("target", "target hit", "another", "another boxed", "none", "none hit", "size word", "colour word",
          "shape word")  # fmt: skip


def naming(eval_dir: Path, samples_path: Path) -> tuple[Counter[str], int]:
    """(counts of :data:`NAMING`, answers read) over the samples that have a target object and whose answer
    has an object line (the last reasoning line)."""
    samples = read_samples(samples_path)
    preds = {p.id: p for p in load_predictions(eval_dir / "predictions.jsonl", samples)}
    count: Counter[str] = Counter()
    read = 0
    for s in samples:
        p, t = preds.get(s.id), target_object(s)
        think = (p.raw_output or "").split("</think>")[0] if p is not None else ""
        lines = [x for x in think.replace("<think>", "").split("\n") if x.strip()]
        if t is None or not lines:
            continue
        read += 1
        line, target = lines[-1] + " ", t[1]
        box, image = (p.box, p.image) if p is not None else (None, None)
        hit = image == s.target_image and box is not None and iou(box, s.target_box) >= 0.5
        named = [
            (k, o) for k, per in enumerate(s.objects, start=1) for o in per if f"the {describe(o)} " in line
        ]
        if f"the {describe(target)} " in line:
            count["target"] += 1
            count["target hit"] += hit
        elif named:
            count["another"] += 1
            count["another boxed"] += any(image == k and box is not None and iou(box, o.box) >= 0.5
                                          for k, o in named)  # fmt: skip
        else:
            count["none"] += 1
            count["none hit"] += hit
        words = line.replace(".", " ").split()
        for key, value in (("size word", target.attributes.get("size")), ("colour word",
                           target.attributes.get("color")), ("shape word", target.category)):  # fmt: skip
            count[key] += value in words
    return count, read


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("evals", nargs="+", type=Path)
    p.add_argument("--samples", type=Path, required=True)
    a = p.parse_args(argv)
    print("eval | " + " | ".join(OUTCOMES) + " | IoU quartiles (right image)")
    for e in a.evals:
        c, ious = outcomes(e, a.samples)
        q = statistics.quantiles(ious, n=4) if len(ious) > 1 else []
        print(f"{e} | " + " | ".join(str(c[o]) for o in OUTCOMES) + " | " + ", ".join(f"{v:.2f}" for v in q))
    print("\neval | answers read | the object line names: " + " | ".join(NAMING))
    for e in a.evals:
        c, read = naming(e, a.samples)
        print(f"{e} | {read} | " + " | ".join(str(c[k]) for k in NAMING))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
