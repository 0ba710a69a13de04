"""``mirg sft --config CFG.yaml [--key value ...]``: stage 1, supervised fine-tuning on reasoning trajectories
with TRL's SFTTrainer (see :mod:`mirg.training.sft`)."""

import functools

from mirg.training.stage_cli import add_stage_arguments, run_stage

add_arguments = functools.partial(add_stage_arguments, stage="sft")
run = functools.partial(run_stage, stage="sft")
