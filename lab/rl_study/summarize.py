"""One line per study run: validation hits of SFT and SFT+RL on the same samples (Acc@0.5 and image accuracy,
exact McNemar), and the GRPO diagnostics (start -> end). Optionally the test split too (``--test``: only for the
configuration the study recommends).

    python -m lab.rl_study.summarize runs/rl_study/R0 runs/rl_study/R1 ...
    python -m lab.rl_study.summarize runs/rl_study/R2 --test
    python -m lab.rl_study.summarize runs/rl_study/R0 --vs runs/rl_study/R2     # two RL runs, same val samples
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mirg.compare import paired
from mirg.demo.report import rl_diagnostics
from mirg.runs import load_run

DIAG = (
    "reward",
    "format",
    "image",
    "object",
    "groups with zero reward spread",
    "clipped completions",
    "entropy",
)


def pair_line(a_dir: Path, b_dir: Path, a_label: str, b_label: str) -> str:
    a, b = load_run(a_dir, a_label), load_run(b_dir, b_label)
    parts = []
    for measure, name in (("acc", "Acc@0.5"), ("image", "image")):
        r = paired(a.hits(measure), b.hits(measure))
        parts.append(f"{name} {a_label} {r['hits_a']}/{r['n']} -> {b_label} {r['hits_b']}/{r['n']} "
                     f"(only {a_label} {r['only_a']}, only {b_label} {r['only_b']}, p = {r['p']:.2g})")  # fmt: skip
    return "; ".join(parts)


def diag_line(rl: Path) -> str:
    d = rl_diagnostics(rl) or {}
    return ", ".join(f"{k} {d[k][0]:.2f}->{d[k][1]:.2f}" for k in DIAG if k in d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--test", action="store_true", help="also the test split (eval/)")
    p.add_argument("--vs", type=Path, help="compare each run's SFT+RL with this run's SFT+RL on validation")
    args = p.parse_args(argv)
    for run in args.runs:
        summary = json.loads((run / "demo.json").read_text(encoding="utf-8"))
        seconds = summary.get("stage_seconds", {}).get("rl")
        print(f"## {run.name} (rl {seconds} s)")
        print("  val:  " + pair_line(run / "eval_val" / "sft", run / "eval_val" / "rl", "SFT", "SFT+RL"))
        if args.vs:
            print(f"  vs {args.vs.name}: " + pair_line(args.vs / "eval_val" / "rl", run / "eval_val" / "rl",
                                                       args.vs.name, run.name))  # fmt: skip
        if args.test:
            print("  test: " + pair_line(run / "eval" / "sft", run / "eval" / "rl", "SFT", "SFT+RL"))
        print("  grpo: " + diag_line(run / "rl"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
