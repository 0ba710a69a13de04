"""``mirg demo [--out DIR] [--seed S] [--ablation] [--base DIR] [--config YAML]``: the whole MIRG-RL pipeline on
the tiny model, then ``DIR/report.md`` and ``DIR/report.html``. Rerun with the same ``--out`` to resume: finished
stages are skipped. See docs/demo.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="run folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="data and training seed (default 0)")
    p.add_argument("--ablation", action="store_true",
                   help="also run SFT only / RL only / SFT+RL object-only / SFT+RL dual over several seeds")  # fmt: skip
    p.add_argument("--base", help="pretrained base checkpoint (default: assets/tiny_base when shipped)")
    p.add_argument(
        "--config", metavar="YAML", help="demo settings to override (e.g. configs/demo/smoke.yaml)"
    )


def run(args: argparse.Namespace) -> int:
    from mirg.demo.pipeline import load_settings, run_demo

    settings = load_settings(args.config, seed=args.seed)
    command = "mirg " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["demo"] else None
    summary = run_demo(args.out, settings, base=args.base, ablation=args.ablation, command=command)
    print(f"report: {summary['report']['md']} and {summary['report']['html']}")
    if summary.get("warning"):
        print(f"WARNING: {summary['warning']}")
    return 0
