"""The one prompt builder: Sample -> chat messages. SFT, RL and evaluation all call it, so they cannot drift.

User turn (docs/contract.md)::

    Image-1: <image>
    Image-2: <image>
    <question>
    <instruction suffix: reason in <think></think>, answer in <answer></answer> in the family's dialect>

``{"type": "image"}`` placeholders are interleaved with the ``Image-k:`` text labels, the form TRL and the
Qwen chat template expect. Coordinates in answers are the dialect's native ones (Qwen2.5-VL: pixels of the
processor-resized image; Qwen2-VL: [0, 1000)); :func:`resized_sizes` and :func:`resized_size` give the
resized (width, height) needed to convert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mirg import boxes as B
from mirg.answers import Dialect, get_dialect
from mirg.sample import Sample

INSTRUCTIONS = {
    "qwen2_5_vl": (
        "First reason step by step across the images inside <think></think>. Then give the answer inside "
        '<answer></answer> as JSON {"image": k, "bbox_2d": [x1, y1, x2, y2]}, where k is the number of the '
        "image that holds the object and the box is in pixels of that image."
    ),
    "qwen2_vl": (
        "First reason step by step across the images inside <think></think>. Then give the answer inside "
        "<answer></answer> as Image-k <|box_start|>(x1,y1),(x2,y2)<|box_end|>, where k is the number of the "
        "image that holds the object and the coordinates are integers in [0, 1000)."
    ),
}


def _dialect(dialect: Dialect | str) -> Dialect:
    return get_dialect(dialect) if isinstance(dialect, str) else dialect


def instruction(dialect: Dialect | str) -> str:
    """The instruction suffix for a dialect (how to format reasoning and answer)."""
    return INSTRUCTIONS[_dialect(dialect).name]


def user_content(num_images: int, question: str, dialect: Dialect | str) -> list[dict[str, Any]]:
    """The user turn's content parts: ``Image-k:`` labels interleaved with image placeholders, then text."""
    parts: list[dict[str, Any]] = []
    for k in range(1, num_images + 1):
        parts.append({"type": "text", "text": f"{'' if k == 1 else chr(10)}Image-{k}: "})
        parts.append({"type": "image"})
    parts.append({"type": "text", "text": f"\n{question.strip()}\n{instruction(dialect)}"})
    return parts


def build_messages(
    sample: Sample, dialect: Dialect | str, completion: str | None = None, system: str | None = None
) -> list[dict[str, Any]]:
    """Chat messages for a Sample; with ``completion`` the assistant turn is appended (SFT targets).

    ``system`` adds a system turn (the chat template otherwise inserts Qwen's default one).
    """
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append({"role": "user", "content": user_content(sample.num_images, sample.question, dialect)})
    if completion is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": completion}]})
    return messages


def prompt_text(processor: Any, messages: list[dict[str, Any]]) -> str:
    """The prompt string (chat template applied, generation prompt added) for a processor's tokenizer."""
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def resized_sizes(image_grid_thw: Any, patch_size: int = B.QWEN_PATCH_SIZE) -> list[tuple[int, int]]:
    """(width, height) in pixels of each processor-resized image, from the processor's ``image_grid_thw``."""
    return [B.resized_size_from_grid(row, patch_size)[::-1] for row in image_grid_thw]


def image_processor_settings(processor: Any) -> dict[str, int]:
    """patch_size, merge_size, min_pixels, max_pixels of a Qwen-VL processor (or its image processor)."""
    ip = getattr(processor, "image_processor", processor)
    size = getattr(ip, "size", None) or {}
    get = size.get if isinstance(size, dict) else (lambda k, d=None: getattr(size, k, d))
    min_pixels = getattr(ip, "min_pixels", None) or get("shortest_edge") or B.QWEN_MIN_PIXELS
    max_pixels = getattr(ip, "max_pixels", None) or get("longest_edge") or B.QWEN_MAX_PIXELS
    return {
        "patch_size": int(getattr(ip, "patch_size", B.QWEN_PATCH_SIZE)),
        "merge_size": int(getattr(ip, "merge_size", B.QWEN_MERGE_SIZE)),
        "min_pixels": int(min_pixels),
        "max_pixels": int(max_pixels),
    }


def resized_size(original_wh: Sequence[int], processor: Any) -> tuple[int, int]:
    """(width, height) the processor will resize an image of ``original_wh`` to, without running it.

    Same arithmetic as the processor (``smart_resize``); the tests check it against ``image_grid_thw``.
    """
    s = image_processor_settings(processor)
    h, w = B.smart_resize(
        int(original_wh[1]),
        int(original_wh[0]),
        factor=s["patch_size"] * s["merge_size"],
        min_pixels=s["min_pixels"],
        max_pixels=s["max_pixels"],
    )
    return w, h


def target_completion(
    sample: Sample, dialect: Dialect | str, reasoning: str, resized_wh: tuple[int, int] | None
) -> str:
    """The completion text answering ``sample`` (its target image and box) in the dialect's coordinates.

    ``resized_wh`` is the processor-resized (width, height) of the target image (Qwen2.5-VL needs it).
    """
    d = _dialect(dialect)
    if sample.target_image is None or sample.target_box is None:
        raise ValueError(f"sample {sample.id!r} has no target image/box to render")
    return d.render_completion(
        reasoning, sample.target_image, d.from_normalized(sample.target_box, resized_wh)
    )
