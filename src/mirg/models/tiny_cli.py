"""``mirg tiny-model --out DIR [--size tiny|small] [--seed N]``: a tiny random Qwen2.5-VL checkpoint, offline."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mirg.models.tiny import SIZES

    p.add_argument("--out", required=True, help="output folder (a normal checkpoint folder)")
    p.add_argument(
        "--size", choices=tuple(SIZES), default="tiny", help="tiny (~1M parameters) or small (~6M)"
    )
    p.add_argument("--seed", type=int, default=0, help="weights seed; same seed, same bytes (default 0)")


def run(args: argparse.Namespace) -> int:
    from mirg.errors import MirgError
    from mirg.models.tiny import build_tiny_model, describe
    from mirg.outputs import check_out_dir

    if args.seed < 0:
        raise MirgError(f"--seed must be >= 0, got {args.seed}")
    check_out_dir(args.out)
    path = build_tiny_model(args.out, size=args.size, seed=args.seed)
    print(describe(path))
    return 0
