"""Is one perception checkpoint better than another on the same held-out scenes? A paired comparison.

Two 500-scene figures each carry a standard error of about 2.2 points, but both checkpoints answer the *same*
scenes, so the honest test is paired: count the scenes only the first gets right and those only the second gets
right, and ask how likely so lopsided a split is if neither is better (exact two-sided McNemar / sign test).
Greedy answers and scoring are the pretraining run's own (``lab.tinybase.evaluate``); the held-out scenes are
``heldout_refer`` at the pretraining run's seed + 1,000,003. ``--multi-image`` asks the held-out multi-image
referring questions of the cards instead (``heldout_multi``, 2-3 images, mirg prompt; a hit names the right image).
``by_expression`` gives both checkpoints' Acc@0.5 by the attributes the question names (first, second).

    python -m lab.probes.paired_refer assets/tiny_base runs/X3/final --image-size 224
    python -m lab.probes.paired_refer runs/D/final runs/D2/final --multi-image
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--prompt", choices=("short", "mirg"), default="short")
    p.add_argument(
        "--seed", type=int, default=0, help="the pretraining run's seed (held-out: seed + 1000003)"
    )
    p.add_argument("--multi-image", action="store_true", help="held-out multi-image questions (mirg prompt)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from lab.tinybase.data import heldout_multi, heldout_refer
    from lab.tinybase.evaluate import generate, refer_metrics
    from lab.tinybase.loop import HELDOUT_SEED_OFFSET
    from lab.tinybase.perception import DataConfig
    from mirg.models.loading import load_model
    from mirg.stats import sign_test

    torch.set_num_threads(args.threads)
    cfg = replace(DataConfig(), image_sizes=(args.image_size,), size_weights=(1.0,),
                  mirg_prompt=1.0 if args.prompt == "mirg" or args.multi_image else 0.0)  # fmt: skip
    held = heldout_multi if args.multi_image else heldout_refer
    scenes = held(args.seed + HELDOUT_SEED_OFFSET, args.samples, cfg)
    hits, by_expression = [], []
    for ck in (args.first, args.second):
        loaded = load_model(ck, device="cpu", dtype="float32")
        answers = generate(loaded.model, loaded.processor, scenes)
        hits.append([refer_metrics([s], [a])["acc@0.5"] >= 1.0 for s, a in zip(scenes, answers, strict=True)])
        by_expression.append(refer_metrics(scenes, answers).get("acc@0.5_by_expression", {}))
    only_a = sum(a and not b for a, b in zip(*hits, strict=True))
    only_b = sum(b and not a for a, b in zip(*hits, strict=True))
    out = {"first": args.first, "second": args.second, "scenes": len(scenes),
           "prompt": "mirg" if args.multi_image else args.prompt, "multi_image": args.multi_image,
           "acc_first": sum(hits[0]) / len(scenes), "acc_second": sum(hits[1]) / len(scenes),
           "only_first": only_a, "only_second": only_b, "p_two_sided": sign_test(only_a, only_b),
           "by_expression": {k: [v, by_expression[1].get(k)] for k, v in by_expression[0].items()}}  # fmt: skip
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
