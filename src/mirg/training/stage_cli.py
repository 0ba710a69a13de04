"""What ``mirg sft`` and ``mirg rl`` share: TRL-style arguments (``--config CFG.yaml`` then ``--key value``
overrides of any config key), ``--resume``, ``--check`` (validate a config without a GPU or weights) and
``--help-all`` (every key).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from mirg.errors import MirgError

EPILOGS = {
    "sft": """\
config keys (YAML or --key value overrides; --help-all lists all of them):
  model_name_or_path    base checkpoint folder or Hub id          train_file   trajectories.jsonl
  output_dir            where checkpoints and the model go        max_steps / num_train_epochs
  learning_rate, per_device_train_batch_size, gradient_accumulation_steps, save_steps, logging_steps
  assistant_only_loss   loss on the answer only (default true)    freeze_vision  freeze the vision tower
  use_peft, lora_r, lora_alpha, lora_dropout, lora_target_modules  LoRA through PEFT
  bf16, gradient_checkpointing, dtype   GPU settings (on CPU: fp32, no checkpointing, chosen automatically)

examples:
  mirg sft --config configs/tiny/sft.yaml
  mirg sft --config configs/tiny/sft.yaml --max_steps 20 --output_dir runs/sft-smoke
  mirg sft --config configs/tiny/sft.yaml --resume
  accelerate launch --config_file configs/accelerate/zero2.yaml -m mirg.cli sft --config CFG.yaml
""",
    "rl": """\
config keys (YAML or --key value overrides; --help-all lists all of them):
  model_name_or_path    SFT output (full or LoRA) or base model   train_file   Sample JSONL / MIG-Bench JSON
  num_generations, beta, loss_type, epsilon, temperature, max_completion_length, learning_rate
  w_format, w_image, w_object   reward weights                   object_variant  iou | threshold | giou
  iou_threshold                 tau for 'threshold'              gated           image-aware gating (true)
  dialect               auto | qwen2_5_vl | qwen2_vl              freeze_vision, use_peft, lora_r, ...
  use_vllm, vllm_mode   vLLM rollouts on GPUs (colocate | server; see docs/scaling.md)

examples:
  mirg rl --config configs/tiny/rl.yaml
  mirg rl --config configs/tiny/rl.yaml --model_name_or_path runs/tiny-sft --beta 0.04 --gated false
  mirg rl --config configs/qwen2_5_vl_7b/rl.yaml --check
  accelerate launch --config_file configs/accelerate/zero3.yaml -m mirg.cli rl --config CFG.yaml
""",
}


def stage_types(stage: str) -> tuple[list[type], dict[str, Any]]:
    """The dataclasses of a stage, in order (mirg's, TRL's trainer config, ``trl.ModelConfig``), and mirg's
    defaults for them."""
    from trl import GRPOConfig, ModelConfig, SFTConfig

    from mirg.training.config import RLDataArguments, SFTDataArguments

    if stage == "sft":
        from mirg.training.sft import SFT_DEFAULTS

        return [SFTDataArguments, SFTConfig, ModelConfig], SFT_DEFAULTS
    from mirg.training.rl import RL_DEFAULTS

    return [RLDataArguments, GRPOConfig, ModelConfig], RL_DEFAULTS


def add_stage_arguments(parser: argparse.ArgumentParser, stage: str) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOGS[stage]
    parser.add_argument(
        "--config", metavar="CFG.yaml", help="YAML config (TRL style: one mapping of key: value)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help="resume from the last checkpoint-* in output_dir, or from CHECKPOINT",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the config and build the model on the meta device, then exit (no GPU or weights needed)",
    )
    parser.add_argument("--help-all", action="store_true", help="list every config key and exit")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                        help="mirg's messages, progress lines included (main process; default info)")  # fmt: skip
    from mirg.training.config import collect_overrides

    collect_overrides(parser)  # any other --key value pair overrides a config key


class _Stderr(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is when a line is logged, not as it was when the handler
    was made (pytest, notebooks and progress bars swap it; a stale one may be closed)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str = "info") -> None:
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)
    logger = logging.getLogger("mirg")
    if not logger.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s mirg: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(getattr(logging, level.upper()) if rank == 0 else logging.WARNING)


def check_stage(stage: str, parsed: list[Any], config_path: str | None) -> list[str]:
    """Validate parsed configs without a GPU or weights; return report lines.

    The model is built on the meta device from ``config.json`` in ``model_name_or_path`` when that is a local
    folder, else from ``model_config.json`` next to the YAML (the real-size configs ship one).
    """
    from mirg.training.modeling import build_meta_model, freeze_vision, lora_config

    data_args, train_args, model_args = parsed
    lines = [f"{stage} config OK: output_dir={train_args.output_dir}"]
    if stage == "rl":
        dialect = data_args.dialect if data_args.dialect != "auto" else "qwen2_5_vl"
        rc = data_args.reward_config(dialect)
        lines.append(
            f"reward: weights {rc.weights}, object {rc.object_variant}, {'gated' if rc.gated else 'ungated'}; "
            f"GRPO: {train_args.num_generations} generations, beta {train_args.beta}, "
            f"loss {train_args.loss_type}, epsilon {train_args.epsilon}, temperature {train_args.temperature}"
        )
    model_path = Path(str(model_args.model_name_or_path)) if model_args.model_name_or_path else None
    candidates = [model_path / "config.json"] if model_path else []
    if config_path:
        candidates.append(Path(config_path).parent / "model_config.json")
    found = next((c for c in candidates if c.is_file()), None)
    if found is None and model_path is None:
        raise MirgError("--check: model_name_or_path is required (in the YAML or as --model_name_or_path)")
    if found is None:
        raise MirgError(
            f"--check: no config.json in {model_path} and no model_config.json next to the YAML to build from"
        )
    model, n = build_meta_model(found)
    lines.append(
        f"model: {model.config.model_type} with {n / 1e9:.2f}B parameters built on the meta device ({found})"
    )
    if data_args.freeze_vision:
        lines.append(f"freeze_vision: {freeze_vision(model) / 1e6:.0f}M vision parameters would freeze")
    peft = lora_config(model_args, data_args.freeze_vision)
    if peft is not None:
        lines.append(f"LoRA: r={peft.r}, alpha={peft.lora_alpha}, targets {peft.target_modules}")
    train_file = data_args.train_file
    if train_file and not Path(train_file).is_file():
        lines.append(f"note: train_file {train_file} does not exist here (not needed for --check)")
    elif train_file and stage == "rl" and getattr(train_args, "use_vllm", False):
        lines.append(vllm_images_line(data_args, train_args, train_file))
    return lines


def vllm_images_line(data_args: Any, train_args: Any, train_file: str) -> str:
    """What ``--check`` says about vLLM's per-prompt image limit for the RL data (a WARNING when it is short)."""
    from mirg.migbench import load_samples

    most = max((len(s.images) for s in load_samples(train_file)), default=0)
    limit = data_args.vllm_image_limit
    if limit is not None and most > limit:
        return f"WARNING: the data has prompts with {most} images, above vllm_image_limit={limit}: raise it"
    if train_args.vllm_mode == "server":
        return (f"WARNING: vLLM server mode: start `trl vllm-serve` with --limit-mm-per-prompt "
                f"'{{\"image\": {max(most, limit or 0)}}}' (the data has up to {most} images per prompt)")  # fmt: skip
    return f"vLLM colocate: limit_mm_per_prompt image={limit or most} (the data has up to {most} images per prompt)"


def run_stage(args: argparse.Namespace, stage: str) -> int:
    from mirg.training.config import parse_stage_config, stage_help

    types, defaults = stage_types(stage)
    if args.help_all:
        print(stage_help(types, f"mirg {stage}"))
        return 0
    parsed, notes = parse_stage_config(types, args.config, args.overrides, defaults=defaults)
    if args.check:
        print("\n".join(notes + check_stage(stage, parsed, args.config)))
        return 0
    setup_logging(args.log_level)
    if stage == "sft":
        from mirg.training.sft import train_sft as train
    else:
        from mirg.training.rl import train_rl as train
    train(*parsed, notes=notes, resume=args.resume)
    return 0
