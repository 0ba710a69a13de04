"""The demo's settings and its base model: defaults < ``--config YAML`` < ``--key value`` on the command line
(parsed by :func:`mirg.training.config.parse_config`, the mechanism of ``mirg sft`` and ``mirg rl``).
Sizes are per MIG-Synth task.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import mirg
from mirg.errors import MirgError
from mirg.trajectories.template import REASONING_LENGTHS

# Package data, so that a wheel (`pip install .`) runs the same demo as a checkout: `assets/` and `configs/` at the
# repository root are links to these folders.
PACKAGE = Path(mirg.__file__).resolve().parent
SHIPPED_BASE = PACKAGE / "assets" / "tiny_base"
NO_BASE_WARNING = "no pretrained base found: results are at chance"

# Default learning rates by base (docs/demo.md). The random tiny model needs large steps to learn the format at
# all; from a pretrained base, GRPO at 3e-4 turned the answers into digit strings (SFT+RL 0.0 % Acc@0.5) and
# 3e-5 gave the best row.
LEARNING_RATES = {
    "random": {"sft_learning_rate": 3e-3, "rl_learning_rate": 3e-4},
    "pretrained": {"sft_learning_rate": 5e-4, "rl_learning_rate": 3e-5},
}


def _opt(default: Any, text: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class DemoSettings:
    """Every knob of a demo run. Sizes are per MIG-Synth task; train and test use disjoint seeds."""

    seed: int = _opt(0, "data and training seed")
    tasks: list[str] | None = _opt(None, "MIG-Synth tasks (default: all)")
    train_per_task: int = _opt(128, "SFT trajectories per task (the SFT split)")
    test_per_task: int = _opt(40, "held-out test samples per task (440 in all)")
    image_size: int | None = _opt(None, "px per side (default: the base's pretraining size, else 112)")
    images: list[int] = _opt([2, 3], "min and max images per sample")
    distractors: list[int] | None = _opt(
        None, "min and max extra objects per image besides those a task needs (default: MIG-Synth's 2-4)"
    )
    reasoning: str = _opt(
        "compact",
        "trajectory reasoning: full (4 steps), short (last 2), brief (last 1) or compact (own 2 sentences)",
    )
    rl_per_task: int = _opt(
        64, "GRPO prompts per task from a split of their own, disjoint from SFT and test (0: the SFT split)"
    )
    rl_data_seed: int | None = _opt(None, "seed of the RL split (default 1000*seed+3)")
    val_per_task: int = _opt(
        0, "validation samples per task, evaluated after SFT and RL to choose settings (0: none)"
    )
    val_data_seed: int | None = _opt(None, "seed of the validation split (default 1000*seed+4)")
    sft_steps: int = _opt(500, "SFT steps")
    sft_batch_size: int = _opt(8, "SFT batch size")
    sft_learning_rate: float | None = _opt(None, "SFT learning rate (default: by base, 3e-3 / 5e-4)")
    freeze_vision: bool = _opt(
        False, "freeze the vision tower and merger in SFT and GRPO (as the 7B configs do)"
    )
    rl_steps: int = _opt(100, "GRPO steps")
    rl_prompts_per_step: int = _opt(8, "GRPO prompts per step")
    num_generations: int = _opt(4, "GRPO completions per prompt")
    rl_learning_rate: float | None = _opt(None, "GRPO learning rate (default: by base, 3e-4 / 3e-5)")
    temperature: float = _opt(0.8, "GRPO sampling temperature")
    max_completion_length: int = _opt(128, "GRPO completion budget in tokens")
    rl_lr_scheduler_type: str = _opt("constant", "GRPO learning-rate schedule (TRL's lr_scheduler_type)")
    rl_warmup_steps: int = _opt(0, "GRPO warmup steps")
    rl_beta: float = _opt(0.0, "GRPO KL coefficient (0: no reference model)")
    rl_scale_rewards: str = _opt(
        "group",
        "GRPO advantage scaling: group (std of each group, TRL's default), batch (std of the batch), none",
    )
    w_format: float = _opt(1.0, "GRPO reward weight of the format term (demo and ablation MIRG-RL rows)")
    w_image: float = _opt(1.0, "GRPO reward weight of the image term")
    w_object: float = _opt(1.0, "GRPO reward weight of the object term")
    object_variant: str = _opt("iou", "GRPO object reward: iou, threshold (IoU >= 0.5) or giou")
    eval_batch_size: int = _opt(16, "evaluation batch size (greedy decoding)")
    eval_max_new_tokens: int = _opt(160, "evaluation token budget")
    gallery_per_kind: int = _opt(4, "report gallery pictures per kind")
    ablation_seeds: int = _opt(2, "--ablation: training seeds seed, seed+1, ... on the same data")

    def __post_init__(self) -> None:
        from mirg.rewards import OBJECT_VARIANTS

        for name, allowed in (("reasoning", REASONING_LENGTHS), ("object_variant", OBJECT_VARIANTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not _pair(self.images) or not 2 <= self.images[0] <= self.images[1]:
            raise ValueError(f"images must be [min, max] with 2 <= min <= max, got {self.images}")
        if self.distractors is not None and (
            not _pair(self.distractors) or not 0 <= self.distractors[0] <= self.distractors[1] <= 10
        ):
            raise ValueError(
                f"distractors must be [min, max] with 0 <= min <= max <= 10, got {self.distractors}"
            )
        for name in ("train_per_task", "test_per_task", "sft_steps", "rl_steps", "rl_prompts_per_step",
                     "num_generations", "eval_batch_size", "ablation_seeds"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.rl_per_task, self.val_per_task, self.rl_warmup_steps, self.rl_beta) < 0:
            raise ValueError("rl_per_task, val_per_task, rl_warmup_steps and rl_beta must be >= 0")
        if self.rl_scale_rewards not in ("group", "batch", "none"):
            raise ValueError(f"rl_scale_rewards must be group, batch or none, got {self.rl_scale_rewards!r}")

    def for_base(self, base: Path | None) -> DemoSettings:
        """These settings with what was left at None filled in for ``base`` (None: the random tiny model): the
        learning rates of a random or a pretrained base, and the image size the base was pretrained on."""
        kind = "random" if base is None else "pretrained"
        fill: dict[str, Any] = {k: v for k, v in LEARNING_RATES[kind].items() if getattr(self, k) is None}
        if self.image_size is None:  # the size a pretrained base was trained on, when its metrics say
            config = (base_metrics(base).get("config") or {}) if base is not None else {}
            fill["image_size"] = int(config.get("image_size") or 112)
        return replace(self, **fill)

    def data_seeds(self) -> dict[str, int | None]:
        """The MIG-Synth seed of every split (None: the split is not made). ``rl`` None: RL uses the SFT split."""
        return {
            "train": 1000 * self.seed + 1,
            "test": 1000 * self.seed + 2,
            "rl": None if not self.rl_per_task else _or(self.rl_data_seed, 1000 * self.seed + 3),
            "val": None if not self.val_per_task else _or(self.val_data_seed, 1000 * self.seed + 4),
        }

    def rl_reward(self) -> dict[str, Any]:
        """The demo's MIRG-RL reward (dual, image-gated) with its weights, and its object variant when not the
        default (see :meth:`digest`)."""
        reward = {**self.digest("w_format", "w_image", "w_object"), "gated": True}
        return reward | self.digest(changed=("object_variant",))

    def rl_schedule(self) -> dict[str, Any]:
        """GRPO schedule and KL settings passed to ``mirg rl`` (only the non-default ones are fingerprinted)."""
        return {"lr_scheduler_type": self.rl_lr_scheduler_type, "warmup_steps": self.rl_warmup_steps,
                "beta": self.rl_beta, "scale_rewards": self.rl_scale_rewards}  # fmt: skip

    def digest(self, *names: str, changed: tuple[str, ...] = ()) -> dict[str, Any]:
        """The values of ``names``, then those of the ``changed`` names that are not at their default: a setting
        added later joins a stage's key only when set, so a default run keeps its stage fingerprints."""
        d, default = asdict(self), asdict(DemoSettings())
        return {n: d[n] for n in names} | {n: d[n] for n in changed if d[n] != default[n]}

    def data_digest(self) -> dict[str, Any]:
        """What the MIG-Synth splits depend on."""
        return self.digest("seed", "tasks", "image_size", "images", changed=("distractors",))


def _pair(value: Any) -> bool:
    """A [min, max] setting: a list of two integers (a YAML ``images: 3`` is not one)."""
    return isinstance(value, list | tuple) and len(value) == 2 and all(type(v) is int for v in value)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def load_settings(
    path: str | Path | None = None, overrides: list[str] | None = None, **values: Any
) -> DemoSettings:
    """Defaults < YAML file < ``overrides`` (``--key value`` words) < ``values`` (keyword settings; None values
    are ignored). Unknown keys and bad values raise one-line MirgErrors."""
    from mirg.training.config import parse_config

    (settings,) = parse_config([DemoSettings], path, overrides)
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return replace(settings, **given)
    except (TypeError, ValueError) as e:
        raise MirgError(f"bad DemoSettings settings: {str(e).splitlines()[0]}") from None


# ------------------------------------------------------------------------------------------------- the base
def resolve_base(base: str | Path | None, shipped: Path = SHIPPED_BASE) -> tuple[Path | None, str]:
    """(pretrained base folder or None, where it came from)."""
    if base:
        p = Path(base)
        if not (p / "config.json").is_file():
            raise MirgError(f"demo: --base {p} is not a checkpoint folder (no config.json)")
        return p, "--base"
    if (shipped / "config.json").is_file():
        return shipped, "shipped (assets/tiny_base)"
    return None, "none"


def base_metrics(base: Path) -> dict[str, Any]:
    """The ``metrics.json`` a pretrained tiny base carries ({} when it has none)."""
    from mirg.models.card import read_card_metrics

    return read_card_metrics(base, f"demo: base {base}") or {}


def base_grounding(base: Path | None) -> dict[str, Any] | None:
    """A pretrained base's held-out single-image referring Acc@0.5 (short prompt, a fraction) and the most
    objects per scene it was measured on, when its metrics record them."""
    if base is None:
        return None
    metrics = base_metrics(base)
    acc = (metrics.get("refer_short_prompt") or {}).get("acc@0.5")
    if acc is None:
        return None
    return {"acc@0.5": float(acc), "max_objects": (metrics.get("config") or {}).get("max_objects") or 5}
