"""``mirg rl --config CFG.yaml [--key value ...]``: stage 2, image-aware GRPO with the dual reward on TRL's
GRPOTrainer (see :mod:`mirg.training.rl`)."""

from __future__ import annotations

import argparse

from mirg.training.stage_cli import add_stage_arguments, run_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, "rl")


def run(args: argparse.Namespace) -> int:
    return run_stage(args, "rl")
