"""How much of a base's single-image grounding survives the demo's SFT and GRPO? (lab/NOTES.md, round ten)

Two figures. For each CHECKPOINT: held-out single-image referring scenes (the pretraining run's seed + 1,000,003),
greedy answers with room for the demo's longer reasoning, and Acc@0.5 of the answer's box **whatever image index it
names** (a model after the demo's SFT says "Image-2" on a single image; the box is what is asked here). For each
``--demo RUN`` folder: its eval/{base,sft,rl} answers on the held-out MIG-Synth test, hits (right image, IoU >= 0.5)
split by which image holds the target.

    python -m lab.probes.sft_retention assets/tiny_base runs/demo/sft --samples 200 --demo runs/demo
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

BOX = re.compile(r'"bbox_2d"\s*:\s*\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,'
                 r"\s*(-?\d+(?:\.\d+)?)\s*\]")  # fmt: skip


def box_hits(scenes: list, answers: list[str]) -> float:
    """Fraction of answers whose first ``bbox_2d`` has IoU >= 0.5 with the target, whatever image it names."""
    from mirg.boxes import iou

    hits = 0
    for s, a in zip(scenes, answers, strict=True):
        m = BOX.search(a)
        hits += bool(m) and iou(tuple(float(v) for v in m.groups()), s.boxes[s.targets[0]]) >= 0.5
    return hits / max(len(scenes), 1)


def demo_split(run: Path) -> dict[str, dict[str, list[int]]]:
    """Per eval stage: {target image: [samples, hits]} from a demo run's predictions and test samples."""
    from mirg.boxes import iou

    samples = {}
    for line in (run / "data" / "test" / "samples.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        samples[d["id"]] = d
    out = {}
    for stage in ("base", "sft", "rl"):
        path = run / "eval" / stage / "predictions.jsonl"
        if not path.is_file():
            continue
        n, hit = Counter(), Counter()
        for line in path.read_text(encoding="utf-8").splitlines():
            p = json.loads(line)
            s = samples[p["id"]]
            t = s["target_image"]
            n[t] += 1
            hit[t] += (
                p.get("pred_image") == t
                and bool(p.get("pred_box"))
                and iou(p["pred_box"], s["target_box"]) >= 0.5
            )
        out[stage] = {str(t): [n[t], hit[t]] for t in sorted(n)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="*")
    p.add_argument("--demo", action="append", default=[], help="a mirg demo run folder (repeatable)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--prompt", choices=("short", "mirg"), default="mirg")
    p.add_argument("--max-new-tokens", type=int, default=240)
    p.add_argument(
        "--seed", type=int, default=0, help="the pretraining run's seed (held-out: seed + 1000003)"
    )
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    if args.checkpoints:
        import torch

        from lab.tinybase.data import heldout_refer
        from lab.tinybase.evaluate import generate
        from lab.tinybase.loop import HELDOUT_SEED_OFFSET
        from lab.tinybase.perception import DataConfig
        from mirg.models.loading import load_model

        torch.set_num_threads(args.threads)
        cfg = replace(DataConfig(), image_sizes=(args.image_size,), size_weights=(1.0,),
                      mirg_prompt=1.0 if args.prompt == "mirg" else 0.0)  # fmt: skip
        scenes = heldout_refer(args.seed + HELDOUT_SEED_OFFSET, args.samples, cfg)
        for ck in args.checkpoints:
            loaded = load_model(ck, device="cpu", dtype="float32")
            answers = generate(loaded.model, loaded.processor, scenes, max_new_tokens=args.max_new_tokens)
            print(json.dumps({"checkpoint": ck, "scenes": len(scenes), "prompt": args.prompt,
                              "box_acc@0.5_any_image": box_hits(scenes, answers)}), flush=True)  # fmt: skip
    for run in args.demo:
        print(json.dumps({"demo": run, "by_target_image": demo_split(Path(run))}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
