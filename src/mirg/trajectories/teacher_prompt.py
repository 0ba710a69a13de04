"""The teacher prompt: images + question + a hint block (the annotations as text) + our answer format.

The same messages go to every teacher backend (HTTP or local checkpoint). They are built with
:func:`mirg.prompting.build_messages` (``Image-k:`` labels interleaved with ``{"type": "image"}``
placeholders; the dialect's instruction last), with the hint block and the teacher's brief inserted between
the question and the instruction, and a system turn. Boxes in the hints are in the *student's* answer
coordinates (Qwen2.5-VL: pixels of the processor-resized image, whose size the hints state; Qwen2-VL:
[0, 1000)), so the teacher answers in exactly the format the trajectory needs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mirg.answers import Dialect
from mirg.prompting import build_messages
from mirg.sample import Sample
from mirg.trajectories.describe import describe

PROMPT_VERSION = "teacher-prompt/1"  # part of the teacher key: change it when the prompt text changes

SYSTEM = (
    "You are an expert at multi-image visual reasoning. You write clear, step-by-step reasoning that a "
    "student model will learn from."
)

BRIEF = (
    "The hints below are annotations of the images, given to you so that your reasoning is correct. Reason "
    "as if you saw these facts in the images yourself: describe what matters in each image, relate the "
    "images to each other to decide which image holds the target, then locate it. Do not mention the hints "
    "and do not copy them word for word."
)

HINT_START = "<hints>"
HINT_END = "</hints>"


def hint_block(
    sample: Sample,
    dialect: Dialect,
    resized_sizes: Sequence[tuple[int, int]],
    with_answer: bool = True,
) -> str:
    """The annotations rendered as plain text (no tags): frame of the coordinates, objects per image with
    boxes, image-level relations, and (``with_answer``) the correct image and box."""

    def box_text(k: int, box: Sequence[float]) -> str:  # a box of Image-k in the student's coordinates
        wh = resized_sizes[k - 1] if k - 1 < len(resized_sizes) else None
        return "[" + ", ".join(str(int(v)) for v in dialect.from_normalized(box, wh)) + "]"

    lines: list[str] = []
    if dialect.coords == "pixels":
        sizes = ", ".join(f"Image-{k}: {w}x{h}" for k, (w, h) in enumerate(resized_sizes, start=1))
        lines.append(f"Coordinates are pixels of each image at this size (width x height): {sizes}.")
    else:
        lines.append("Coordinates are integers from 0 to 1000 relative to each image's width and height.")
    for rb in sample.ref_boxes:
        lines.append(f"Reference box given in the question: Image-{rb.image} {box_text(rb.image, rb.box)}.")
    if any(sample.objects):
        lines.append("Objects:")
        for k, per in enumerate(sample.objects, start=1):
            items = [f"{describe(o)} {box_text(k, o.box)}" for o in per]
            lines.append(f"- Image-{k}: " + ("; ".join(items) if items else "(none)"))
    texts = [r["text"] for r in sample.relations if isinstance(r.get("text"), str) and r["text"].strip()]
    if texts:
        lines.append("Relations between the images:")
        lines.extend(f"- {t.strip()}" for t in texts)
    if with_answer and sample.target_image is not None and sample.target_box is not None:
        t = sample.target_image
        lines.append(f"Correct answer: Image-{t}, box {box_text(t, sample.target_box)}.")
    return "\n".join(lines)


def teacher_messages(
    sample: Sample,
    dialect: Dialect,
    resized_sizes: Sequence[tuple[int, int]],
    with_answer: bool = True,
) -> list[dict[str, Any]]:
    """Chat messages for the teacher: system turn, then the student's user turn with the brief and hints
    inserted before the answer-format instruction. Images are ``{"type": "image"}`` placeholders."""
    hints = hint_block(sample, dialect, resized_sizes, with_answer)
    question = f"{sample.question.strip()}\n\n{BRIEF}\n{HINT_START}\n{hints}\n{HINT_END}"
    return build_messages(replace(sample, question=question), dialect, system=SYSTEM)


# --- verbatim quoting ---------------------------------------------------------------------------------

QUOTE_WINDOW = 12  # words


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters and digits); punctuation and markup are ignored."""
    return re.findall(r"[a-z0-9]+", text.lower())


def quoted_window(reasoning: str, hints: str, n: int = QUOTE_WINDOW) -> str | None:
    """The first ``n``-word window of ``hints`` that appears in ``reasoning`` (same words, same order,
    ignoring case and punctuation), or None. This is what "quotes the hint block verbatim" means here."""
    hw = words(hints)
    if len(hw) < n:
        return None
    windows = {tuple(hw[i : i + n]) for i in range(len(hw) - n + 1)}
    rw = words(reasoning)
    for i in range(len(rw) - n + 1):
        w = tuple(rw[i : i + n])
        if w in windows:
            return " ".join(w)
    return None
