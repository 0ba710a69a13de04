"""``mirg sft --config CFG.yaml [--key value ...]``: stage 1, supervised fine-tuning on reasoning trajectories
with TRL's SFTTrainer (see :mod:`mirg.training.sft`)."""

from __future__ import annotations

import argparse

from mirg.training.stage_cli import add_stage_arguments, run_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, "sft")


def run(args: argparse.Namespace) -> int:
    return run_stage(args, "sft")
