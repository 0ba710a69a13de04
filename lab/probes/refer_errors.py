"""Where a perception base's referring answers go wrong (lab/NOTES.md, round five): greedy answers on
held-out scenes, grouped by the expression's attributes, by how the hit object differs from the named one
(wrong-object answers), by whether another object shares the target's merged-token cell, and by the named colour;
and, for wrong-object answers to questions that name a colour, which colour was boxed instead.

    python -m lab.probes.refer_errors runs/G/final --image-size 224 --n 500
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from dataclasses import replace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="checkpoint folder")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument(
        "--n", type=int, default=500, help="held-out scenes (seed 1000003: the pretrain default's)"
    )
    p.add_argument("--max-objects", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()

    import torch

    from lab.tinybase.data import heldout_refer
    from lab.tinybase.evaluate import generate
    from lab.tinybase.loop import HELDOUT_SEED_OFFSET
    from lab.tinybase.perception import DataConfig
    from mirg.answers import get_dialect
    from mirg.boxes import iou
    from mirg.models.loading import load_model

    if a.threads:
        torch.set_num_threads(a.threads)
    loaded = load_model(a.model, dtype="float32")
    data = replace(DataConfig(), image_sizes=(a.image_size,), size_weights=(1.0,), mirg_prompt=0.0)
    samples = heldout_refer(HELDOUT_SEED_OFFSET, a.n, data.capped(a.max_objects))
    answers = generate(loaded.model, loaded.processor, samples)
    merged = 14 * loaded.processor.image_processor.merge_size  # px per side of one merged token's cell
    dialect = get_dialect("qwen2_5_vl")

    def cell(b: tuple[int, ...]) -> tuple[int, int]:
        return int((b[1] + b[3]) / 2 // merged), int((b[0] + b[2]) / 2 // merged)

    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    differs: Counter[str] = Counter()
    confused: Counter[str] = Counter()  # colour named -> colour of the object boxed instead
    for s, text in zip(samples, answers, strict=True):
        t = s.targets[0]
        ans = dialect.parse(text)
        v = iou(ans.box, s.boxes[t]) if ans.ok and ans.image == 1 else 0.0
        hit_other = None
        if v < 0.5 and ans.ok and ans.image == 1:
            hit_other = next((j for j, b in enumerate(s.boxes) if j != t and iou(ans.box, b) >= 0.5), None)
        if hit_other is not None:
            names = ("size", "color", "shape")
            diff = [n for n, x, y in zip(names, s.labels[t].split(), s.labels[hit_other].split(), strict=True)
                    if x != y]  # fmt: skip
            differs["+".join(diff)] += 1
            named_c, hit_c = s.labels[t].split()[1], s.labels[hit_other].split()[1]
            if named_c in s.meta["expressions"][0].split() and named_c != hit_c:
                confused[f"{named_c} -> {hit_c}"] += 1
        words = s.meta["expressions"][0].removeprefix("the ").split()
        attrs = zip(("size", "color", "shape"), s.labels[t].split(), strict=True)
        named = [n for n, value in attrs if value in words]
        shared = sum(cell(b) == cell(s.boxes[t]) for j, b in enumerate(s.boxes) if j != t) > 0
        keys = {"expression names": "+".join(named), "objects": str(len(s.boxes)),
                "target's cell": "shared" if shared else "alone",
                "objects, target's cell": f"{len(s.boxes)}, {'shared' if shared else 'alone'}"}  # fmt: skip
        if "color" in named:  # is one colour word the trouble (e.g. one split into several tokens)?
            keys["colour named, by colour"] = s.labels[t].split()[1]
            if named == ["color"]:
                keys["colour only, by colour"] = s.labels[t].split()[1]
        for g, k in keys.items():
            groups[g][k].append((float(v >= 0.5), float(hit_other is not None)))
    out = {
        g: {k: {"n": len(r), "acc@0.5": round(sum(x for x, _ in r) / len(r), 3),
                "other_object": round(sum(y for _, y in r) / len(r), 3)} for k, r in sorted(rows.items())}
        for g, rows in groups.items()
    }  # fmt: skip
    out["wrong object differs in"] = dict(differs.most_common())
    out["colour named -> colour boxed (wrong object, other colour)"] = dict(confused.most_common())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
