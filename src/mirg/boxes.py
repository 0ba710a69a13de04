"""Boxes, overlap measures and coordinate systems.

Three coordinate systems meet in this project (docs/contract.md):

* **normalized** — floats in [0, 1], ``x1 y1 x2 y2`` relative to the image's original width/height. Everything
  mirg stores is normalized.
* **qwen2_vl** — integers in [0, 1000) of the image (Qwen2-VL's ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``).
* **qwen2_5_vl** — absolute pixels of the image *as the processor resized it* (``smart_resize``), never the
  original size. A box is mapped with the resized width/height (``image_grid_thw * patch_size``).

Conversions happen only at the model boundary. The IoU here is the plain continuous formula (no +1 pixel
convention), zero when boxes do not overlap, and zero for degenerate boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Box = tuple[float, float, float, float]

QWEN2_SCALE = 1000


def area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _intersection_union(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    inter = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    return inter, area(a) + area(b) - inter


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``x1 y1 x2 y2`` boxes in the same coordinates; in [0, 1]."""
    inter, union = _intersection_union(a, b)
    return float(inter / union) if inter > 0 and union > 0 else 0.0


def giou(a: Sequence[float], b: Sequence[float]) -> float:
    """Generalized IoU in [-1, 1]: IoU minus the share of the enclosing box covered by neither box."""
    enclose = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    if enclose <= 0:
        return 0.0
    inter, union = _intersection_union(a, b)
    if union <= 0:
        return 0.0
    return float(inter / union - (enclose - union) / enclose)


def is_number(v: Any) -> bool:
    """A finite number from JSON: not a bool, not NaN or infinite, not an integer too large for a float."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def is_valid_box(b: Sequence[float], width: float = 1.0, height: float = 1.0) -> bool:
    """True for a non-empty box (x1<x2, y1<y2) inside ``[0, width] x [0, height]``."""
    if len(b) != 4 or not all(is_number(v) for v in b):
        return False
    x1, y1, x2, y2 = b
    return 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


def clip_box(b: Sequence[float], width: float = 1.0, height: float = 1.0) -> Box:
    return (
        min(max(b[0], 0.0), width),
        min(max(b[1], 0.0), height),
        min(max(b[2], 0.0), width),
        min(max(b[3], 0.0), height),
    )


# --- Qwen2.5-VL: absolute pixels of the processor-resized image --------------------------------------------

QWEN_PATCH_SIZE = 14
QWEN_MERGE_SIZE = 2
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 28 * 28 * 1280


def smart_resize(
    height: int,
    width: int,
    factor: int = QWEN_PATCH_SIZE * QWEN_MERGE_SIZE,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
) -> tuple[int, int]:
    """The (height, width) the Qwen2-VL/Qwen2.5-VL image processor resizes an image to.

    Same arithmetic as ``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize`` (tested against
    it): both sides multiples of ``factor`` (patch_size * merge_size), area within [min_pixels, max_pixels],
    aspect ratio kept as closely as possible. Kept here so the core imports no deep-learning library.
    """
    if min(height, width) <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if (ratio := max(height, width) / min(height, width)) > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {ratio}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resized_size_from_grid(grid_thw: Sequence[int], patch_size: int = QWEN_PATCH_SIZE) -> tuple[int, int]:
    """(height, width) in pixels of the resized image from the processor's ``image_grid_thw`` row (t, h, w)."""
    _, gh, gw = (int(v) for v in grid_thw)
    return gh * patch_size, gw * patch_size


def normalized_to_pixels(b: Sequence[float], resized_w: int, resized_h: int) -> tuple[int, int, int, int]:
    """Normalized box -> integer pixels of the resized image (Qwen2.5-VL answers)."""
    return (
        round(b[0] * resized_w),
        round(b[1] * resized_h),
        round(b[2] * resized_w),
        round(b[3] * resized_h),
    )


def pixels_to_normalized(b: Sequence[float], resized_w: int, resized_h: int) -> Box:
    """Pixels of the resized image -> normalized box (relative to the original image, same proportions)."""
    return (b[0] / resized_w, b[1] / resized_h, b[2] / resized_w, b[3] / resized_h)


# --- Qwen2-VL: integers in [0, 1000) -----------------------------------------------------------------------


def normalized_to_qwen2(b: Sequence[float]) -> tuple[int, int, int, int]:
    """Normalized box -> Qwen2-VL integers in [0, 1000): round, then clamp to 0..999."""
    return tuple(min(max(round(v * QWEN2_SCALE), 0), QWEN2_SCALE - 1) for v in b)  # type: ignore[return-value]


def qwen2_to_normalized(b: Sequence[float]) -> Box:
    """Qwen2-VL [0, 1000) box -> normalized floats."""
    return (b[0] / QWEN2_SCALE, b[1] / QWEN2_SCALE, b[2] / QWEN2_SCALE, b[3] / QWEN2_SCALE)


def normalized_to_original_pixels(b: Sequence[float], width: int, height: int) -> Box:
    """Normalized box -> float pixels of the original image (for drawing and reporting)."""
    return (b[0] * width, b[1] * height, b[2] * width, b[3] * height)
