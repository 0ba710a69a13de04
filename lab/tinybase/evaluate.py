"""Held-out metrics of a perception base: greedy decoding on fixed single-image referring samples (the lab's
own measure; the product's evaluation is :mod:`mirg.evaluation`).

Acc@0.5: the answer parses in the qwen2_5_vl dialect, names the target's image (1, or ``place`` of a multi-image
sample), and its box (pixels of the resized image, here equal to the rendered image) has IoU >= 0.5 with the
object's tight box.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from lab.tinybase.batching import prompt_batch
from mirg.answers import get_dialect
from mirg.boxes import iou


def generate(model: Any, processor: Any, samples: Sequence[Any], batch_size: int = 32,
             max_new_tokens: int = 80) -> list[str]:  # fmt: skip
    """Greedy completions of the first user turn of each sample."""
    import torch

    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        with torch.inference_mode():
            for i in range(0, len(samples), batch_size):
                chunk = samples[i : i + batch_size]
                enc = prompt_batch(processor, chunk)
                enc = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in enc.items()}
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
                new = gen[:, enc["input_ids"].shape[1] :]
                out.extend(processor.batch_decode(new, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return out


def expression_family(expression: str) -> str:
    """Which attributes a referring expression names, as ``size+color+shape`` order: 'the small blue triangle'
    -> 'size+color+shape', 'the red object' -> 'color'."""
    from lab.tinybase.vision import named_attributes

    return "+".join(named_attributes(expression)) or "none"


def refer_metrics(samples: Sequence[Any], completions: Sequence[str]) -> dict[str, Any]:
    """Acc@0.5, mean IoU (0 when unparsed or wrong image), format rate, image accuracy, per object count, and
    ``other_object@0.5``: the fraction of answers whose box misses the target but has IoU >= 0.5 with another
    object of the scene (the expression was misread, as opposed to nothing localised). Samples with a
    ``meta["expressions"]`` also get Acc@0.5 by the attributes their (first) expression names, and multi-image
    samples by the target image's place among the images (``"2/3"``: second of three)."""
    dialect = get_dialect("qwen2_5_vl")
    hits, ious, fmt, img, other = [], [], [], [], []
    by_n: dict[int, list[float]] = defaultdict(list)
    by_attrs: dict[str, list[float]] = defaultdict(list)
    by_place: dict[str, list[float]] = defaultdict(list)
    for s, text in zip(samples, completions, strict=True):
        ans = dialect.parse(text)
        gt = s.boxes[s.targets[0]]
        right = ans.ok and ans.image == getattr(s, "place", 1)
        v = iou(ans.box, gt) if right else 0.0
        fmt.append(float(ans.ok))
        img.append(float(right))
        ious.append(v)
        hits.append(float(v >= 0.5))
        others = [b for j, b in enumerate(s.boxes) if j != s.targets[0]]
        other.append(float(v < 0.5 and right and any(iou(ans.box, b) >= 0.5 for b in others)))
        by_n[len(s.boxes)].append(float(v >= 0.5))
        expressions = getattr(s, "meta", {}).get("expressions")
        if expressions:
            by_attrs[expression_family(expressions[0])].append(float(v >= 0.5))
        if getattr(s, "context", None):
            by_place[f"{s.place}/{len(s.context) + 1}"].append(float(v >= 0.5))
    n = max(1, len(samples))
    out = {
        "n": len(samples),
        "acc@0.5": sum(hits) / n,
        "mean_iou": sum(ious) / n,
        "format": sum(fmt) / n,
        "image_acc": sum(img) / n,
        "other_object@0.5": sum(other) / n,
        "acc@0.5_by_objects": {str(k): round(sum(v) / len(v), 4) for k, v in sorted(by_n.items())},
    }
    if by_place:
        out["acc@0.5_by_place"] = {k: round(sum(v) / len(v), 4) for k, v in sorted(by_place.items())}
    if by_attrs:
        out["acc@0.5_by_expression"] = {k: round(sum(v) / len(v), 4) for k, v in sorted(by_attrs.items())}
    return out


def mean_box_baseline(samples: Sequence[Any]) -> dict[str, Any]:
    """The metrics of always answering the held-out targets' mean box (a floor any base must clear; computed
    on the very samples it is compared with, which favours the baseline)."""
    targets = [s.boxes[s.targets[0]] for s in samples]
    box = [round(sum(b[i] for b in targets) / max(1, len(targets))) for i in range(4)]
    answer = "<answer>" + json.dumps({"image": 1, "bbox_2d": box}) + "</answer>"
    return {"box": box, **refer_metrics(samples, [answer] * len(samples))}


def evaluate_refer(
    model: Any, processor: Any, samples: Sequence[Any], batch_size: int = 32
) -> dict[str, Any]:
    """Generate and score; also returns a few example completions."""
    completions = generate(model, processor, samples, batch_size)
    m = refer_metrics(samples, completions)
    m["examples"] = [
        {"expression": s.meta["expressions"][0], "target": list(s.boxes[s.targets[0]]), "completion": c}
        for s, c in list(zip(samples, completions, strict=True))[:3]
    ]
    return m
