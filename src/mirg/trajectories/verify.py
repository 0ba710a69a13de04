"""Verification of a reasoning trajectory against the ground truth.

A completion passes when (in this order; the first failure is the reason):

* ``no_answer`` — exactly one ``<answer>`` block parses in the dialect (strict) and names an image;
* ``invalid_box`` — the image is in range and the box is non-empty and inside the image (native coordinates);
* ``wrong_image`` — the image is the target image;
* ``low_iou`` — IoU with the target box (both normalized) is at least ``tau`` (default 0.5);
* ``empty_reasoning`` — the reasoning has at least ``min_words`` words;
* ``bad_reasoning`` — the reasoning holds no ``<think>``/``<answer>`` tags of its own;
* ``quotes_hints`` — no 12-word window of the hint block appears in the reasoning
  (:func:`mirg.trajectories.teacher_prompt.quoted_window`).

The reasoning is the text inside ``<think>…</think>``, or, without think tags, everything before ``<answer>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mirg.answers import ANSWER_RE, THINK_RE, Answer, Dialect
from mirg.boxes import iou
from mirg.sample import Sample
from mirg.trajectories.teacher_prompt import quoted_window, words

DEFAULT_TAU = 0.5
MIN_WORDS = 5
_TAG_RE = re.compile(r"</?(think|answer)>", re.I)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    code: str  # "" when ok, else one of the reasons in the module docstring
    detail: str
    reasoning: str
    iou: float | None = None


def extract_reasoning(text: str) -> str:
    """The reasoning part of a completion: inside ``<think>`` or else before ``<answer>``; stripped."""
    m = THINK_RE.search(text)
    if m:
        return m.group(1).strip()
    a = ANSWER_RE.search(text)
    return (text[: a.start()] if a else text).strip()


def verify_completion(
    sample: Sample,
    text: str,
    dialect: Dialect,
    resized_sizes: Sequence[tuple[int, int]],
    tau: float = DEFAULT_TAU,
    hints: str | None = None,
    min_words: int = MIN_WORDS,
) -> Verdict:
    """Check one completion (see the module docstring). ``resized_sizes``: per image (width, height) after the
    processor's resize (Qwen2.5-VL pixel coordinates refer to them)."""
    if not isinstance(text, str):
        return Verdict(False, "no_answer", "not text", "")
    reasoning = extract_reasoning(text)
    res = dialect.parse(text, strict=True)
    if not isinstance(res, Answer):
        return Verdict(False, "no_answer", res.reason, reasoning)
    if res.image is None:
        return Verdict(False, "no_answer", "no image index", reasoning)
    n = sample.num_images
    if not 1 <= res.image <= n:
        return Verdict(False, "invalid_box", f"image {res.image} out of range 1..{n}", reasoning)
    wh = resized_sizes[res.image - 1] if dialect.coords == "pixels" else None
    why = dialect.check_answer(res, n, wh)
    if why:
        return Verdict(False, "invalid_box", why, reasoning)
    if res.image != sample.target_image:
        return Verdict(False, "wrong_image", f"image {res.image}, expected {sample.target_image}", reasoning)
    assert sample.target_box is not None
    overlap = iou(dialect.to_normalized(res.box, wh), sample.target_box)
    if overlap < tau:
        return Verdict(False, "low_iou", f"IoU {overlap:.3f} < {tau}", reasoning, overlap)
    if len(words(reasoning)) < min_words:
        return Verdict(
            False, "empty_reasoning", f"fewer than {min_words} words of reasoning", reasoning, overlap
        )
    if _TAG_RE.search(reasoning):
        return Verdict(False, "bad_reasoning", "reasoning contains think/answer tags", reasoning, overlap)
    if hints:
        quote = quoted_window(reasoning, hints)
        if quote is not None:
            return Verdict(False, "quotes_hints", f"quotes the hints: '{quote}'", reasoning, overlap)
    return Verdict(True, "", "", reasoning, overlap)
