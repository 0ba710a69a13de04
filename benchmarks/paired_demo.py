"""Is one demo run better than another, stage by stage, on the same test samples? A paired comparison.

Two ``mirg demo`` folders evaluated on the same test set (same seed and ``test_per_task``; e.g. the demo from two
bases) answer the *same* samples, so each stage is compared by the samples only one of them gets right (Acc@0.5,
as the report scores them: ``mirg.demo.report.stage_hits``) with the exact two-sided McNemar / sign test. Two runs
that agree on every sample print 0 / 0 and p = 1. ``--measure image`` compares naming the target image instead. Samples only one folder evaluated are left out (``common``).

    python benchmarks/paired_demo.py runs/demo-r6-440 runs/demo
    python benchmarks/paired_demo.py runs/demo-r6-440 runs/demo --measure image   # naming the right image
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def compare(first: dict[str, dict[str, bool]], second: dict[str, dict[str, bool]]) -> list[dict]:
    """Per stage both runs evaluated: hits of each on the common samples, the discordant counts and the p-value."""
    from mirg.stats import sign_test

    rows = []
    for stage, a in first.items():
        b = second.get(stage)
        if b is None:
            continue
        common = sorted(a.keys() & b.keys())
        only_a = sum(a[i] and not b[i] for i in common)
        only_b = sum(b[i] and not a[i] for i in common)
        rows.append({"stage": stage, "common": len(common), "hits_first": sum(a[i] for i in common),
                     "hits_second": sum(b[i] for i in common), "only_first": only_a, "only_second": only_b,
                     "p_two_sided": sign_test(only_a, only_b)})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("first", type=Path, help="a mirg demo --out folder")
    p.add_argument("second", type=Path, help="another one, evaluated on the same test samples")
    p.add_argument("--measure", choices=("acc", "image"), default="acc",
                   help="what a sample counts: Acc@0.5 (right image and IoU >= 0.5; default) or naming the target "
                        "image (image accuracy)")  # fmt: skip
    args = p.parse_args(argv)

    from mirg.demo.report import stage_hits

    measure = {"acc": "success", "image": "right_image"}[args.measure]
    rows = compare(stage_hits(args.first, measure), stage_hits(args.second, measure))
    if not rows:
        print(f"no stage evaluated in both {args.first} and {args.second}", file=sys.stderr)
        return 2
    for row in rows:
        extra = {}
        if args.measure == "image":  # which image each run's answers name (None: no answer parsed)
            extra = {f"named_{k}": named_images(folder, row["stage"]) for k, folder in
                     (("first", args.first), ("second", args.second))}  # fmt: skip
        print(json.dumps({"first": str(args.first), "second": str(args.second), "measure": args.measure, **row,
                          **extra}))  # fmt: skip
    return 0


def named_images(out: Path, stage: str) -> dict[str, int]:
    """How many of a stage's answers name each image ("None": no image parsed), in image order."""
    from collections import Counter

    from mirg.demo.report import scored_items

    counts = Counter(str(it["pred"].get("pred_image")) for it in scored_items(out, stage))
    return dict(sorted(counts.items()))


if __name__ == "__main__":
    raise SystemExit(main())
