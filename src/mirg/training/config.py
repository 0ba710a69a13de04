"""Training configs: mirg's own dataclasses next to TRL's, parsed TRL-style (YAML via ``--config``, then
command-line overrides such as ``--learning_rate 1e-5``), with one-line errors.

Each stage parses three dataclasses into one flat key space (TRL's convention; the YAML is one mapping):

* ``mirg sft``: :class:`SFTDataArguments` + ``trl.SFTConfig`` + ``trl.ModelConfig``
* ``mirg rl``: :class:`RLDataArguments` (data, dialect, reward) + ``trl.GRPOConfig`` + ``trl.ModelConfig``

Precedence: dataclass defaults < YAML < command line. On a machine without CUDA the CPU-sensible settings
(``bf16=False``, ``fp16=False``, ``gradient_checkpointing=False``, ``use_cpu=True``, model ``dtype=float32``)
replace whatever the config asked, and :func:`parse_stage_config` returns a note saying so for the log.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirg.errors import MirgError

CPU_SETTINGS: dict[str, Any] = {
    "bf16": False,
    "fp16": False,
    "gradient_checkpointing": False,
    "use_cpu": True,
    "dtype": "float32",
}


@dataclass
class SFTDataArguments:
    """mirg's options for stage 1 (everything else is ``trl.SFTConfig`` / ``trl.ModelConfig``)."""

    train_file: str | None = field(
        default=None,
        metadata={"help": "trajectories.jsonl from `mirg trajectories` (image paths relative to its folder)"},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "use only the first N trajectories (smoke runs)"}
    )
    freeze_vision: bool = field(
        default=False,
        metadata={"help": "freeze the vision tower and its merger (and keep LoRA out of them)"},
    )


@dataclass
class RLDataArguments:
    """mirg's options for stage 2: data, answer dialect and the reward (docs/contract.md, rewards)."""

    train_file: str | None = field(
        default=None, metadata={"help": "Sample JSONL (e.g. MIG-Synth samples.jsonl) or MIG-Bench JSON"}
    )
    image_root: str | None = field(
        default=None,
        metadata={"help": "folder the sample image paths are relative to (default: the data file's folder)"},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "use only the first N samples"})
    freeze_vision: bool = field(
        default=False,
        metadata={"help": "freeze the vision tower and its merger (and keep LoRA out of them)"},
    )
    dialect: str = field(
        default="auto",
        metadata={"help": "answer dialect: auto (from the model family), qwen2_5_vl or qwen2_vl"},
    )
    w_format: float = field(default=1.0, metadata={"help": "weight of the format reward"})
    w_image: float = field(default=1.0, metadata={"help": "weight of the image reward"})
    w_object: float = field(default=1.0, metadata={"help": "weight of the object (box) reward"})
    object_variant: str = field(
        default="iou", metadata={"help": "object reward: iou, threshold (IoU >= iou_threshold) or giou"}
    )
    iou_threshold: float = field(default=0.5, metadata={"help": "tau of the thresholded object reward"})
    gated: bool = field(
        default=True,
        metadata={"help": "image-aware gating: a box in the wrong image earns no object reward"},
    )
    vllm_image_limit: int | None = field(
        default=None,
        metadata={
            "help": "images per prompt the vLLM engine accepts (vLLM's limit_mm_per_prompt, which TRL never "
            "passes); colocate mode: mirg sets it, by default to the most images a prompt of the data has; "
            "server mode: start `trl vllm-serve` with --limit-mm-per-prompt '{\"image\": N}'"
        },
    )
    share_prompt: bool = field(
        default=True,
        metadata={
            "help": "encode each prompt (vision tower + prefill) once per group of completions, in generation "
            "and in the policy/old/reference log-probs (mirg.training.grpo_shared); false: TRL's own path"
        },
    )

    def reward_config(self, dialect: str) -> Any:
        """The :class:`mirg.rewards.RewardConfig` these options describe, for ``dialect``."""
        from mirg.rewards import RewardConfig

        try:
            return RewardConfig(
                dialect=dialect,
                w_format=self.w_format,
                w_image=self.w_image,
                w_object=self.w_object,
                object_variant=self.object_variant,
                iou_threshold=self.iou_threshold,
                gated=self.gated,
            )
        except (ValueError, KeyError) as e:
            raise MirgError(f"bad reward settings: {e}") from None


def _parser(dataclass_types: list[type]) -> Any:
    from transformers import HfArgumentParser

    class MirgArgumentParser(HfArgumentParser):
        """argparse's exit-on-error turned into a MirgError (one line in the CLI, an exception in tests)."""

        def error(self, message: str) -> None:  # type: ignore[override]
            raise MirgError(message)

    return MirgArgumentParser(dataclass_types, allow_abbrev=False)


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` (``env:`` entries included); MirgError when missing or not a mapping."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise MirgError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise MirgError(f"{p}: invalid YAML ({str(e).splitlines()[0]})") from None
    except UnicodeDecodeError as e:
        raise MirgError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MirgError(f"{p}: a config must be a YAML mapping of option: value")
    return data


def parse_config(
    dataclass_types: list[type],
    config_path: str | Path | None = None,
    overrides: list[str] | None = None,
    defaults: dict[str, Any] | None = None,
    adjust: Any = None,
) -> list[Any]:
    """Parse YAML + ``--key value`` overrides into instances of ``dataclass_types`` (in that order).

    Precedence: dataclass defaults < ``defaults`` < YAML < ``overrides``. Unknown keys, bad values and
    inconsistent settings raise MirgError with one line naming them. ``env:`` in the YAML sets environment
    variables (TRL's convention). ``adjust(values)``, when given, may change the parsed values (a flat dict of
    every key) before the dataclasses are built. The one mechanism behind ``mirg sft``, ``mirg rl``,
    ``mirg demo`` and the lab's command line.
    """
    import os

    parser = _parser(dataclass_types)
    known = {a.dest for a in parser._actions}
    if defaults:
        parser.set_defaults(**defaults)
    if config_path is not None:
        cfg = read_yaml_config(config_path)
        env = cfg.pop("env", {}) or {}
        if not isinstance(env, dict):
            raise MirgError(f"{config_path}: 'env' must be a mapping")
        for k, v in env.items():
            os.environ[str(k)] = str(v)
        unknown = sorted(k for k in cfg if k not in known)
        if unknown:
            raise MirgError(f"{config_path}: unknown key(s) {', '.join(unknown)}")
        parser.set_defaults(**cfg)
    namespace, rest = parser.parse_known_args(args=list(overrides or []))
    if rest:
        raise MirgError(f"unknown option(s) {' '.join(rest)}")
    values = vars(namespace)
    if adjust is not None:
        adjust(values)
    outputs = []
    for dtype in dataclass_types:
        keys = {f.name for f in dataclasses.fields(dtype) if f.init}
        try:
            outputs.append(dtype(**{k: v for k, v in values.items() if k in keys}))
        except (ValueError, TypeError) as e:
            raise MirgError(f"bad {dtype.__name__} settings: {str(e).splitlines()[0]}") from None
    return outputs


def parse_stage_config(
    dataclass_types: list[type],
    config_path: str | Path | None = None,
    overrides: list[str] | None = None,
    cpu: bool | None = None,
    defaults: dict[str, Any] | None = None,
) -> tuple[list[Any], list[str]]:
    """:func:`parse_config` for a training stage; returns the instances and notes for the log.

    ``cpu``: force the CPU settings (default: when CUDA is unavailable), replacing whatever the config asked.
    """
    notes: list[str] = []
    if cpu is None:
        import torch

        cpu = not torch.cuda.is_available()

    def adjust(values: dict[str, Any]) -> None:
        if cpu:
            changed = [
                f"{k}={values[k]!r}" for k, v in CPU_SETTINGS.items() if k in values and values[k] != v
            ]
            values.update({k: v for k, v in CPU_SETTINGS.items() if k in values})
            notes.append(
                "no GPU: training on CPU in fp32 without gradient checkpointing "
                "(bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True, dtype=float32)"
                + (f"; replaced {', '.join(changed)}" if changed else "")
            )
        _checkpointing_alias(values)

    outputs = parse_config(dataclass_types, config_path, overrides, defaults, adjust)
    for args in outputs:
        check_training_values(args)
    return outputs, notes


def _checkpointing_alias(values: dict[str, Any]) -> None:
    """Newer transformers renamed ``gradient_checkpointing[_kwargs]`` to ``activation_checkpointing[_kwargs]`` and
    warn on the old name; mirg's configs keep the old name (it works with every transformers 5.x), so its value
    moves to the new one here when the installed version has it and the new one is unset."""
    for old, new in (
        ("gradient_checkpointing", "activation_checkpointing"),
        ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"),
    ):
        if new in values and old in values and values[new] is None:
            values[new], values[old] = values[old], None


def check_training_values(args: Any) -> None:
    """One-line MirgErrors for values TRL or transformers would only refuse with a traceback once training starts
    (a batch size of 0, a non-finite learning rate, a temperature <= 0, an output_dir that is a file, nothing to
    train). Fields ``args`` does not have are not checked."""
    import math

    def has(name: str) -> bool:
        return getattr(args, name, None) is not None

    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        if has(name) and getattr(args, name) < 1:
            raise MirgError(f"{name} must be >= 1, got {getattr(args, name)}")
    if has("learning_rate") and not (math.isfinite(args.learning_rate) and args.learning_rate >= 0):
        raise MirgError(f"learning_rate must be a finite number >= 0, got {args.learning_rate}")
    if has("temperature") and not (math.isfinite(args.temperature) and args.temperature > 0):
        raise MirgError(f"temperature must be > 0, got {args.temperature}")
    if has("max_steps") and has("num_train_epochs") and args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise MirgError(
            f"nothing to train: max_steps {args.max_steps} and num_train_epochs {args.num_train_epochs}; "
            "give max_steps >= 1 or num_train_epochs > 0"
        )
    out = getattr(args, "output_dir", None)
    if out and Path(out).exists() and not Path(out).is_dir():
        raise MirgError(f"output_dir {out} is an existing file; output_dir names a folder")


def collect_overrides(parser: Any) -> None:
    """Make ``parser`` gather every option it does not know into ``args.overrides`` (``--key value`` pairs
    for :func:`parse_config`) instead of rejecting them."""
    parser.set_defaults(overrides=[])
    original = parser.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> tuple[Any, list[str]]:
        ns, extras = original(args, namespace)
        ns.overrides = [*getattr(ns, "overrides", []), *extras]
        return ns, []

    parser.parse_known_args = parse_known_args


def settings_help(dataclass_type: type) -> str:
    """One line per field of ``dataclass_type``: ``--name (default): help`` (for a verb's epilog)."""
    lines = []
    for f in dataclasses.fields(dataclass_type):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        lines.append(f"  --{f.name} ({default}): {f.metadata.get('help', '')}".rstrip(": "))
    return "\n".join(lines)


def stage_help(dataclass_types: list[type], prog: str) -> str:
    """The full help text of every key of a stage (TRL's and mirg's)."""
    parser = _parser(dataclass_types)
    parser.prog = prog
    return parser.format_help()
