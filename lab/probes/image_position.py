"""Can a base read a box off an image that is not the first of its prompt? (lab/NOTES.md, round eleven)

Perception pretraining shows one image per prompt; the demo's multi-image tasks put the target in Image 2 or 3.
This asks each CHECKPOINT the held-out single-image referring questions (the pretraining run's seed + 1,000,003)
three ways, in the mirg prompt: the target image alone ("Locate the red circle."), the target image first of two
("... in Image-1.", a distractor scene from another held-out stream second), and the target image second of two
("... in Image-2.", the distractor first). For each: box Acc@0.5 whatever image index the answer names (the images
are the same size, so the box means the same in either), and how often the answer names the right image.

    python -m lab.probes.image_position assets/tiny_base runs/C/final --samples 200
"""

from __future__ import annotations

import argparse
import json
import re

DISTRACTOR_OFFSET = 77  # the distractor scenes: another held-out stream, never trained on
ANSWER = re.compile(r'"image"\s*:\s*(\d+)\s*,\s*"bbox_2d"\s*:\s*\[([^\]]*)\]')
CONDITIONS = ("alone", "first of two", "second of two")


def prompts(targets: list, distractors: list, condition: str) -> tuple[list[dict], int]:
    """Generation inputs (messages + PIL images) for ``condition`` and the image index that holds the target."""
    from PIL import Image

    from mirg.prompting import user_content

    rows, k = [], 2 if condition == "second of two" else 1
    for t, d in zip(targets, distractors, strict=True):
        target, other = Image.fromarray(t.image), Image.fromarray(d.image)
        expr = t.meta["expressions"][0]
        images = {"alone": [target], "first of two": [target, other], "second of two": [other, target]}[
            condition
        ]
        question = f"Locate {expr}." if len(images) == 1 else f"Locate {expr} in Image-{k}."
        rows.append({"messages": [{"role": "user", "content": user_content(len(images), question, "qwen2_5_vl")}],
                     "images": images})  # fmt: skip
    return rows, k


def score(targets: list, answers: list[str], k: int) -> dict[str, float]:
    """Box Acc@0.5 whatever image is named, and the fraction of answers naming image ``k``."""
    from mirg.boxes import iou

    hits = named = 0
    for t, a in zip(targets, answers, strict=True):
        m = ANSWER.search(a)
        if not m:
            continue
        named += int(m.group(1)) == k
        try:
            box = [float(v) for v in m.group(2).split(",")]
        except ValueError:
            continue
        hits += len(box) == 4 and iou(box, t.boxes[t.targets[0]]) >= 0.5
    n = max(len(targets), 1)
    return {"box_acc@0.5_any_image": hits / n, "names_the_right_image": named / n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--max-new-tokens", type=int, default=80)
    p.add_argument(
        "--seed", type=int, default=0, help="the pretraining run's seed (held-out: seed + 1000003)"
    )
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from lab.tinybase.data import heldout_refer
    from lab.tinybase.evaluate import generate
    from lab.tinybase.loop import HELDOUT_SEED_OFFSET
    from lab.tinybase.perception import DataConfig
    from mirg.models.loading import load_model

    torch.set_num_threads(args.threads)
    cfg = DataConfig(mirg_prompt=0.0, image_sizes=(args.image_size,), size_weights=(1.0,))
    targets = heldout_refer(args.seed + HELDOUT_SEED_OFFSET, args.samples, cfg)
    distractors = heldout_refer(args.seed + HELDOUT_SEED_OFFSET + DISTRACTOR_OFFSET, args.samples, cfg)
    for ck in args.checkpoints:
        loaded = load_model(ck, device="cpu", dtype="float32")
        result = {"checkpoint": ck, "scenes": len(targets)}
        for condition in CONDITIONS:
            rows, k = prompts(targets, distractors, condition)
            answers = generate(loaded.model, loaded.processor, rows, max_new_tokens=args.max_new_tokens)
            result[condition] = score(targets, answers, k)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
