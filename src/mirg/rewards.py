"""The image-aware dual reward of MIRG-RL (docs/contract.md), as plain functions and as TRL reward functions.

For a completion with parsed image ``k`` and box ``b`` (read in the dialect's native coordinates and mapped to
normalized [0, 1] with the resized size of image ``k``), ground truth image ``i*`` and normalized box ``b*``:

* ``format``: 1 when the text is exactly one ``<think>…</think>`` holding some reasoning, then one
  ``<answer>…</answer>`` whose content has the dialect's exact form (:meth:`~mirg.answers.Dialect.render_content`:
  a JSON integer image, not ``"Image-1"`` or ``1.0``; no free text) and is a complete valid answer (image in
  range, x1 < x2, y1 < y2, inside that image); else 0. Empty reasoning earns no format term: RL should keep
  reasoning, not learn to drop it.
* ``image``: 1 when ``k == i*``; else 0.
* ``object``: the box term — IoU (``variant="iou"``), ``1[IoU >= τ]`` (``"threshold"``) or ``(GIoU + 1) / 2``
  (``"giou"``). Gated (default): 0 unless ``k == i*``, so a box in the wrong image earns nothing. Ungated: the box
  is compared with ``b*`` whatever image it names (the "object-only" ablation).
* total ``R = w_f·format + w_i·image + w_o·object``.

Guards against reward hacking: several ``<answer>`` blocks or several boxes parse as no answer (every term 0);
texts longer than :data:`mirg.answers.MAX_COMPLETION_CHARS` are not parsed; a box outside the image earns no
object reward; an answer outside the think/answer layout loses the format term.

The core imports no training code. :func:`trl_reward_functions` wraps the terms for TRL's GRPOTrainer, which
passes dataset columns as keyword arguments and logs each function's mean on its own; the weights go to
``GRPOConfig.reward_weights`` so the total is TRL's weighted sum. :func:`format_reward`, :func:`image_reward`
and :func:`object_reward` are the same terms with the default :class:`RewardConfig` as module-level functions,
for TRL's own CLI and scripts (``--reward_funcs mirg.rewards.format_reward``); the dialect comes from a
``dialect`` column when the dataset has one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mirg.answers import ANSWER_RE, Answer, Dialect, check_format, get_dialect
from mirg.boxes import giou, iou, is_valid_box

OBJECT_VARIANTS = ("iou", "threshold", "giou")


@dataclass(frozen=True)
class RewardConfig:
    """Which terms, how weighted, which box measure, gated or not. Defaults: docs/contract.md."""

    dialect: str = "qwen2_5_vl"
    w_format: float = 1.0
    w_image: float = 1.0
    w_object: float = 1.0
    object_variant: str = "iou"
    iou_threshold: float = 0.5
    gated: bool = True

    def __post_init__(self) -> None:
        get_dialect(self.dialect)
        if self.object_variant not in OBJECT_VARIANTS:
            raise ValueError(f"object_variant must be one of {OBJECT_VARIANTS}, got {self.object_variant!r}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")

    @property
    def weights(self) -> list[float]:
        """Weights in the order of :func:`trl_reward_functions` (format, image, object)."""
        return [self.w_format, self.w_image, self.w_object]


@dataclass(frozen=True)
class RewardTerms:
    format: float
    image: float
    object: float
    total: float
    reason: str = ""  # why the format term is 0, for logs


def _box_measure(pred: Sequence[float], gt: Sequence[float], cfg: RewardConfig) -> float:
    if cfg.object_variant == "iou":
        return iou(pred, gt)
    if cfg.object_variant == "threshold":
        return 1.0 if iou(pred, gt) >= cfg.iou_threshold else 0.0
    return (giou(pred, gt) + 1.0) / 2.0


def completion_text(completion: Any) -> str:
    """The text of a completion as TRL passes it: a string, or a conversational list of messages whose content
    is a string or a list of typed parts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = []
        for msg in completion:
            content = msg.get("content", "") if isinstance(msg, dict) else msg
            if isinstance(content, list):
                parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
            elif isinstance(content, str):
                parts.append(content)
        return "".join(parts)
    return ""


def reward_terms(
    text: Any,
    target_image: int,
    target_box: Sequence[float],
    num_images: int,
    resized_sizes: Sequence[Sequence[int]] | None = None,
    cfg: RewardConfig = RewardConfig(),
) -> RewardTerms:
    """All reward terms for one completion. ``target_box`` is normalized; ``resized_sizes`` holds the
    processor-resized (width, height) of every image (needed by pixel dialects). Never raises on model output."""
    dialect: Dialect = get_dialect(cfg.dialect)
    text = completion_text(text)
    result = dialect.parse(
        text, strict=True
    )  # the content read leniently: what the image and object terms see
    fmt_reason = check_format(text)
    if not isinstance(result, Answer):
        return RewardTerms(0.0, 0.0, 0.0, 0.0, fmt_reason or result.reason)

    k = result.image
    in_range = k is not None and 1 <= k <= num_images
    extent = None
    if in_range and dialect.coords == "pixels":
        if resized_sizes is None:
            raise ValueError(
                f"the {dialect.name} dialect needs the resized size of every image (resized_sizes)"
            )
        extent = tuple(int(v) for v in resized_sizes[k - 1])  # type: ignore[index]
    valid = dialect.check_answer(result, num_images, extent)  # no image / out of range / bad box
    content = ANSWER_RE.search(text).group(1)  # type: ignore[union-attr]  # parse found exactly one block
    fmt_reason = fmt_reason or valid or dialect.exact_content_error(content)
    r_format = 0.0 if fmt_reason else 1.0

    r_image = 1.0 if k == target_image else 0.0
    r_object = 0.0
    box_ok = in_range and not valid
    if box_ok and (r_image or not cfg.gated):
        pred = dialect.to_normalized(result.box, extent)
        if is_valid_box(pred):
            r_object = _box_measure(pred, target_box, cfg)
    total = cfg.w_format * r_format + cfg.w_image * r_image + cfg.w_object * r_object
    return RewardTerms(r_format, r_image, r_object, total, fmt_reason)


def trl_reward_functions(cfg: RewardConfig = RewardConfig()) -> list[Callable[..., list[float]]]:
    """``[format_reward, image_reward, object_reward]`` for ``GRPOTrainer(reward_funcs=...)``; pass
    ``cfg.weights`` as ``GRPOConfig.reward_weights``.

    Each reads the dataset columns ``target_image`` (1-based), ``target_box`` (normalized), ``images`` (to count
    them; or ``num_images``) and, for pixel dialects, ``resized_sizes`` ([[w, h], ...] per image).
    """

    def format_reward(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
        return [t.format for t in terms_for(completions, kwargs, cfg)]

    def image_reward(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
        return [t.image for t in terms_for(completions, kwargs, cfg)]

    def object_reward(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
        return [t.object for t in terms_for(completions, kwargs, cfg)]

    return [format_reward, image_reward, object_reward]


def terms_for(
    completions: list[Any], columns: dict[str, Any], cfg: RewardConfig | None = None
) -> list[RewardTerms]:
    """The terms of a batch of completions from TRL's dataset columns (see :func:`trl_reward_functions`).
    Without ``cfg``: the defaults, in the dialect of a ``dialect`` column when there is one."""
    n = len(completions)
    tgt_img, tgt_box = columns["target_image"], columns["target_box"]
    counts = columns.get("num_images") or [len(imgs) for imgs in columns["images"]]
    sizes = columns.get("resized_sizes") or [None] * n
    dialects = columns.get("dialect") or [cfg.dialect if cfg else RewardConfig.dialect] * n
    configs = [cfg or _DEFAULTS.setdefault(d, RewardConfig(dialect=d)) for d in dialects]
    return [
        reward_terms(c, int(tgt_img[i]), tgt_box[i], int(counts[i]), sizes[i], configs[i])
        for i, c in enumerate(completions)
    ]


_DEFAULTS: dict[str, RewardConfig] = {}


# The terms with the default RewardConfig, as module-level functions TRL's CLI finds by dotted path
# (``--reward_funcs mirg.rewards.format_reward mirg.rewards.image_reward mirg.rewards.object_reward``).


def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """1 per completion in the exact think/answer format with a valid answer, else 0 (module docstring)."""
    return [t.format for t in terms_for(completions, kwargs)]


def image_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """1 per completion naming the target image, else 0."""
    return [t.image for t in terms_for(completions, kwargs)]


def object_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """IoU of the box with the target box, 0 unless the answer names the target image (gated)."""
    return [t.object for t in terms_for(completions, kwargs)]
