"""The trajectory record (one JSON object per line of ``trajectories.jsonl``) and what it needs.

Record fields (the SFT stage reads exactly these)::

    id            sample id
    task, source  from the Sample
    messages      build_messages(sample, dialect, completion="<think>…</think>\\n<answer>…</answer>")
    images        image paths relative to the trajectories.jsonl folder (absolute when no relative path exists)
    target_image  1-based
    target_box    normalized [x1, y1, x2, y2] of the original image
    dialect       "qwen2_5_vl" | "qwen2_vl"
    resized_sizes [[w, h], ...] per image: the processor-resized sizes the answer's pixels refer to
    mode          "template" | "teacher"
    teacher_key   hash of the teacher config, or null (template)

The answer in the completion is always the ground truth rendered by :func:`mirg.prompting.target_completion`
(a teacher's own box only has to pass verification), so SFT targets are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mirg.answers import Dialect, check_format
from mirg.errors import MirgError
from mirg.images import resolve, verified_size
from mirg.outputs import relative_path
from mirg.prompting import build_messages, image_processor_settings, resized_size, target_completion
from mirg.sample import Sample

RECORD_KEYS = (
    "id",
    "task",
    "source",
    "messages",
    "images",
    "target_image",
    "target_box",
    "dialect",
    "resized_sizes",
    "mode",
    "teacher_key",
)

# The tiny model's processor settings (mirg.models.tiny), the default when no --model is given.
DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 224 * 224


class Resizer:
    """Gives the processor-resized (width, height) of images, from a processor or from pixel bounds.

    ``processor``: a loaded Qwen-VL processor (its own settings are used). Otherwise ``min_pixels`` /
    ``max_pixels`` with Qwen's patch 14 and merge 2 (the defaults match the tiny model's processor).
    """

    def __init__(
        self,
        processor: Any = None,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        if processor is None:
            if not 0 < min_pixels <= max_pixels:
                raise MirgError(
                    f"--min-pixels/--max-pixels must satisfy 0 < min <= max, got {min_pixels}, {max_pixels}"
                )
            processor = SimpleNamespace(
                patch_size=14, merge_size=2, min_pixels=min_pixels, max_pixels=max_pixels
            )
        self.processor = processor

    def settings(self) -> dict[str, int]:
        return image_processor_settings(self.processor)

    def sizes(self, sample: Sample, root: str | Path | None) -> list[tuple[int, int]]:
        """Resized (width, height) of each image of ``sample``. Each image is decoded once (a truncated or
        corrupt file is an ImageError naming it, not a trajectory of an unreadable image)."""
        return [resized_size(verified_size(p, root), self.processor) for p in sample.images]


def relative_images(sample: Sample, root: str | Path | None, out_dir: str | Path) -> list[str]:
    """The sample's image paths relative to ``out_dir`` (absolute when no relative path exists)."""
    return [relative_path(resolve(p, root), out_dir) for p in sample.images]


def make_record(
    sample: Sample,
    dialect: Dialect,
    reasoning: str,
    images: Sequence[str],
    resized_sizes: Sequence[tuple[int, int]],
    mode: str,
    teacher_key: str | None,
) -> dict[str, Any]:
    """One trajectory record (see the module docstring); the completion's format is checked."""
    assert sample.target_image is not None and sample.target_box is not None
    wh = tuple(resized_sizes[sample.target_image - 1])
    completion = target_completion(sample, dialect, reasoning, wh)  # type: ignore[arg-type]
    why = check_format(completion)
    if why:
        raise ValueError(f"trajectory for {sample.id!r} is malformed: {why}")
    return {
        "id": sample.id,
        "task": sample.task,
        "source": sample.source,
        "messages": build_messages(sample, dialect, completion=completion),
        "images": list(images),
        "target_image": sample.target_image,
        "target_box": [float(v) for v in sample.target_box],
        "dialect": dialect.name,
        "resized_sizes": [[int(w), int(h)] for w, h in resized_sizes],
        "mode": mode,
        "teacher_key": teacher_key,
    }


def completion_of(record: dict[str, Any]) -> str:
    """The assistant text of a record."""
    return record["messages"][-1]["content"][0]["text"]
