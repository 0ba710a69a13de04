"""``mirg rl --config CFG.yaml [--key value ...]``: stage 2, image-aware GRPO with the dual reward on TRL's
GRPOTrainer (see :mod:`mirg.training.rl`)."""

import functools

from mirg.training.stage_cli import add_stage_arguments, run_stage

add_arguments = functools.partial(add_stage_arguments, stage="rl")
run = functools.partial(run_stage, stage="rl")
