"""``mirg demo [--out DIR] [--ablation] [--base DIR] [--config YAML] [--key value ...]``: the whole MIRG-RL
pipeline on the tiny model, then ``DIR/report.md`` and ``DIR/report.html``. Any demo setting can be given as
``--key value`` (over the YAML, over the defaults). Rerun with the same ``--out`` to resume: finished stages are
skipped. See docs/demo.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mirg.demo.settings import DemoSettings
    from mirg.training.config import collect_overrides, settings_help

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "settings (YAML keys or --key value):\n" + settings_help(DemoSettings)
    p.add_argument("--out", default="runs/demo", help="run folder (default: %(default)s)")
    p.add_argument("--ablation", action="store_true",
                   help="also run SFT only / RL only / SFT+RL object-only / SFT+RL dual over several seeds")  # fmt: skip
    p.add_argument("--base", help="pretrained base checkpoint (default: assets/tiny_base when shipped)")
    p.add_argument(
        "--config", metavar="YAML", help="demo settings to override (e.g. configs/demo/smoke.yaml)"
    )
    collect_overrides(p)


def run(args: argparse.Namespace) -> int:
    from mirg.demo.pipeline import run_demo
    from mirg.demo.settings import load_settings

    settings = load_settings(args.config, args.overrides)
    command = "mirg " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["demo"] else None
    summary = run_demo(args.out, settings, base=args.base, ablation=args.ablation, command=command)
    print(f"report: {summary['report']['md']} and {summary['report']['html']}")
    if summary.get("warning"):
        print(f"WARNING: {summary['warning']}")
    return 0
