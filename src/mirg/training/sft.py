"""Stage 1: supervised fine-tuning on reasoning trajectories with TRL's ``SFTTrainer``.

Reads top to bottom: load the policy -> freeze vision / LoRA -> trajectories dataset -> train (or resume) ->
save the model and its processor to ``output_dir`` (a LoRA run saves the adapter; ``mirg rl`` merges it).
Several images per sample; the loss covers the assistant turn only (``assistant_only_loss``, TRL swaps in a
chat template with generation markers).
"""

from __future__ import annotations

import logging
from typing import Any

from mirg.errors import MirgError
from mirg.training.run import TrainResult, exact_resume, log_notes, train_and_save, training_run

log = logging.getLogger("mirg.training")

# mirg's defaults for TRL's SFTConfig, applied under the YAML (a config may still change them).
SFT_DEFAULTS: dict[str, Any] = {
    "assistant_only_loss": True,  # train on the answer, not on the prompt or image tokens
    "max_length": None,  # multi-image prompts are long; truncation would cut the answer or image tokens
    "report_to": "none",
    "save_strategy": "steps",
}


def train_sft(
    data_args: Any,
    training_args: Any,
    model_args: Any,
    notes: list[str] | None = None,
    resume: Any = None,
) -> TrainResult:
    """Run stage 1 with parsed configs (``SFTDataArguments``, ``trl.SFTConfig``, ``trl.ModelConfig``)."""
    if not data_args.train_file:
        raise MirgError("train_file is required (the trajectories.jsonl to train on)")
    with training_run("sft", data_args, training_args, model_args, resume) as checkpoint:
        log_notes(notes or [])  # after the checks: a refused run says one line
        return _train(data_args, training_args, model_args, checkpoint)


def _train(data_args: Any, training_args: Any, model_args: Any, checkpoint: str | None) -> TrainResult:
    from trl import SFTTrainer

    from mirg.training.data import load_trajectories
    from mirg.training.modeling import freeze_vision, load_policy, lora_config, trainable_summary

    dataset = load_trajectories(data_args.train_file, data_args.max_train_samples)
    log.info("SFT data: %d trajectories from %s", len(dataset), data_args.train_file)

    policy = load_policy(model_args)
    log.info("policy: %s (%s)", policy.source, policy.family)
    peft_config = lora_config(model_args, data_args.freeze_vision)
    if data_args.freeze_vision:
        log.info("freeze_vision: %s vision parameters frozen", f"{freeze_vision(policy.model):,}")

    trainer = exact_resume(SFTTrainer)(
        model=policy.model,
        args=training_args,
        train_dataset=dataset,
        processing_class=policy.processor,
        peft_config=peft_config,
    )
    log.info("SFT: %s; %d process(es)", trainable_summary(trainer.model), trainer.accelerator.num_processes)
    return train_and_save(trainer, policy.processor, "sft", checkpoint)
