"""Stage 2: image-aware GRPO with the dual reward (docs/contract.md, rewards) on TRL's ``GRPOTrainer``.

Reads top to bottom: load the policy (an SFT output — full model or LoRA adapter, merged — or a base model)
-> dialect (from the model family unless set) -> reward functions and weights -> Samples as prompts built by
:func:`mirg.prompting.build_messages` -> train (or resume) -> save.

The three reward terms are separate TRL reward functions (``format_reward``, ``image_reward``,
``object_reward``), so TRL logs ``rewards/<name>/mean`` for each and ``reward`` for the weighted total;
``GRPOConfig.reward_weights`` is set from ``w_format``/``w_image``/``w_object``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import Any

from mirg.errors import MirgError
from mirg.training.run import TrainResult, exact_resume, log_notes, train_and_save, training_run

log = logging.getLogger("mirg.training")

# mirg's defaults for TRL's GRPOConfig, applied under the YAML.
RL_DEFAULTS: dict[str, Any] = {
    "remove_unused_columns": False,  # the reward functions read target_image, target_box, resized_sizes
    "report_to": "none",
}


def train_rl(
    data_args: Any,
    training_args: Any,
    model_args: Any,
    notes: list[str] | None = None,
    resume: Any = None,
) -> TrainResult:
    """Run stage 2 with parsed configs (``RLDataArguments``, ``trl.GRPOConfig``, ``trl.ModelConfig``)."""
    if not data_args.train_file:
        raise MirgError("train_file is required (a Sample JSONL or MIG-Bench JSON)")
    if data_args.dialect not in ("auto", "qwen2_5_vl", "qwen2_vl"):
        raise MirgError(f"dialect must be auto, qwen2_5_vl or qwen2_vl, got {data_args.dialect!r}")
    with training_run("rl", data_args, training_args, model_args, resume) as checkpoint:
        log_notes(notes or [])  # after the checks: a refused run says one line
        return _train(data_args, training_args, model_args, checkpoint)


def _train(data_args: Any, training_args: Any, model_args: Any, checkpoint: str | None) -> TrainResult:
    from trl import GRPOTrainer

    from mirg.rewards import trl_reward_functions
    from mirg.training.data import rl_dataset
    from mirg.training.modeling import freeze_vision, load_policy, lora_config, trainable_summary

    policy = load_policy(model_args)
    dialect = policy.family if data_args.dialect == "auto" else data_args.dialect
    log.info("policy: %s (%s, answers in the %s dialect)", policy.source, policy.family, dialect)
    if training_args.beta != 0.0 and "LoRA adapter" in policy.source and not model_args.use_peft:
        # TRL rebuilds the reference from config._name_or_path, which is the adapter's base: save the merged
        # SFT model so the KL term pulls towards it, not towards the pre-SFT base.
        merged = f"{training_args.output_dir}/sft-merged"
        policy.model.save_pretrained(merged)
        policy.model.config._name_or_path = merged
        log.info("reference model: the merged SFT policy, saved to %s", merged)

    reward_cfg = data_args.reward_config(dialect)
    if training_args.reward_weights is not None and list(training_args.reward_weights) != reward_cfg.weights:
        raise MirgError(
            "set the reward weights with w_format, w_image, w_object (not reward_weights): "
            f"got reward_weights={training_args.reward_weights}"
        )
    training_args.reward_weights = reward_cfg.weights
    log.info(
        "reward: format x%g + image x%g + object(%s%s, %s) x%g",
        reward_cfg.w_format,
        reward_cfg.w_image,
        reward_cfg.object_variant,
        f" tau={reward_cfg.iou_threshold}" if reward_cfg.object_variant == "threshold" else "",
        "gated" if reward_cfg.gated else "ungated",
        reward_cfg.w_object,
    )

    dataset, skipped = rl_dataset(
        data_args.train_file, dialect, policy.processor, data_args.image_root, data_args.max_train_samples
    )
    skipped_note = f" ({skipped} without a target skipped)" if skipped else ""
    log.info("RL data: %d samples from %s%s", len(dataset), data_args.train_file, skipped_note)

    # TRL 1.16 re-encodes the prompts for the loss forward with the tokenizer's default padding side while the
    # prompt ids are left-padded: with right padding, prompts of different lengths in one batch get misaligned
    # mm_token_type_ids (Qwen's 3-D positions then fail or silently shift). Left padding makes them agree.
    policy.processor.tokenizer.padding_side = "left"

    peft_config = lora_config(model_args, data_args.freeze_vision)
    if data_args.freeze_vision:
        log.info("freeze_vision: %s vision parameters frozen", f"{freeze_vision(policy.model):,}")
    most_images = max(len(sizes) for sizes in dataset["resized_sizes"])  # (not "images": decodes them all)
    image_limit = vllm_image_limit(data_args, training_args, most_images)
    from mirg.training.grpo_shared import SharedPromptGRPOTrainer

    # share_prompt: each prompt encoded once per group (docs/training.md, "Prompt sharing"); false: TRL's own class
    trainer_class = exact_resume(SharedPromptGRPOTrainer if data_args.share_prompt else GRPOTrainer)
    with colocated_vllm_image_limit(image_limit):
        trainer = trainer_class(
            model=policy.model,
            reward_funcs=trl_reward_functions(reward_cfg),
            args=training_args,
            train_dataset=dataset,
            processing_class=policy.processor,
            peft_config=peft_config,
        )
    log.info(
        "GRPO: %s; %d process(es); %d generations per prompt, beta=%g, loss_type=%s, epsilon=%g, temperature=%g",
        trainable_summary(trainer.model),
        trainer.accelerator.num_processes,
        training_args.num_generations,
        training_args.beta,
        training_args.loss_type,
        training_args.epsilon,
        training_args.temperature,
    )
    return train_and_save(trainer, policy.processor, "rl", checkpoint)


def vllm_image_limit(data_args: Any, training_args: Any, most_images: int) -> int | None:
    """The images per prompt a colocated vLLM engine must accept (None: no colocated vLLM); MirgError when the
    config's ``vllm_image_limit`` is below what the data holds."""
    limit = data_args.vllm_image_limit
    if limit is not None and most_images > limit:
        raise MirgError(f"the data has prompts with {most_images} images, above vllm_image_limit={limit}")
    if not (training_args.use_vllm and training_args.vllm_mode == "colocate"):
        return None
    return limit or most_images


@contextlib.contextmanager
def colocated_vllm_image_limit(images: int | None) -> Iterator[None]:
    """While TRL builds its colocated ``vllm.LLM`` (trainer construction), add ``limit_mm_per_prompt`` to it:
    TRL 1.16 passes no such argument, and vLLM's default limit refuses or under-reserves multi-image prompts."""
    import trl.generation.vllm_generation as vg

    build = getattr(vg, "LLM", None)
    if images is None or build is None:
        yield
        return
    vg.LLM = functools.partial(build, limit_mm_per_prompt={"image": images})
    log.info("vLLM colocate: limit_mm_per_prompt image=%d", images)
    try:
        yield
    finally:
        vg.LLM = build
