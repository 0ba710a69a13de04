"""Render and parse every answer dialect (docs/contract.md), plus the official MIG-Bench lenient box parser.

A completion looks like ``<think> ... </think><answer> ... </answer>``. What goes inside ``<answer>`` depends on
the model family:

* ``qwen2_5_vl``: ``{"image": 2, "bbox_2d": [x1, y1, x2, y2]}`` in absolute pixels of the resized image.
* ``qwen2_vl``: ``Image-2 <|box_start|>(x1,y1),(x2,y2)<|box_end|>`` in integers of [0, 1000).

Parsers never raise on model output: they return :class:`Answer` or :class:`NoAnswer` with the reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mirg import boxes as B

MAX_COMPLETION_CHARS = 32_768  # longer texts are not parsed (reward hacking by flooding, runaway generation)
MAX_COORDINATE = 100_000.0  # no image coordinate is larger: a box beyond it (or not finite) is no answer

THINK_RE = re.compile(r"<think>(.*?)</think>", re.S)
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.S)
_NUM = r"-?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class Answer:
    """A parsed answer: 1-based ``image`` (None when the text names none) and ``box`` in the dialect's native
    coordinates."""

    image: int | None
    box: tuple[float, float, float, float]

    ok = True


@dataclass(frozen=True)
class NoAnswer:
    """No usable answer; ``reason`` says why (for logs and error analysis)."""

    reason: str

    ok = False
    image = None
    box = None


ParseResult = Answer | NoAnswer

_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
    "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10,
}  # fmt: skip
_IMAGE_MENTION_RE = re.compile(
    r"\bimage[\s\-_]*(\d+)\b|\b(\d+)(?:st|nd|rd|th)\s+image\b|\b(" + "|".join(_ORDINALS) + r")\s+image\b",
    re.I,
)


def find_image_mentions(text: str) -> list[int]:
    """1-based image indices named in free text ('Image-2', 'image 3', 'the second image', '2th image')."""
    out = []
    for m in _IMAGE_MENTION_RE.finditer(text):
        if m.group(1) or m.group(2):
            out.append(int(m.group(1) or m.group(2)))
        else:
            out.append(_ORDINALS[m.group(3).lower()])
    return out


def _finite4(vals: Sequence[object]) -> tuple[float, float, float, float] | None:
    if len(vals) != 4:
        return None
    try:
        out = tuple(float(v) for v in vals)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    if any(isinstance(v, bool) for v in vals) or not all(abs(v) <= MAX_COORDINATE for v in out):
        return None  # also rejects inf and NaN
    return out  # type: ignore[return-value]


class Dialect:
    """One answer format. Subclasses define rendering/parsing of the ``<answer>`` content and coordinates."""

    name: str = ""
    coords: str = ""  # "pixels" (resized image) or "qwen2" ([0, 1000))

    # -- content ------------------------------------------------------------------------------------------
    def render_content(self, image: int, box: Sequence[float]) -> str:
        raise NotImplementedError

    def parse_content(self, content: str) -> ParseResult:
        raise NotImplementedError

    def exact_content_error(self, content: str) -> str:
        """'' when ``content`` has exactly the form :meth:`render_content` writes (an integer image, four
        numbers; no free text), else why. The lenient :meth:`parse_content` reads more than this."""
        raise NotImplementedError

    # -- coordinates --------------------------------------------------------------------------------------
    def from_normalized(
        self, box: Sequence[float], resized_wh: tuple[int, int] | None = None
    ) -> tuple[int, ...]:
        raise NotImplementedError

    def to_normalized(self, box: Sequence[float], resized_wh: tuple[int, int] | None = None) -> B.Box:
        raise NotImplementedError

    def image_extent(self, resized_wh: tuple[int, int] | None = None) -> tuple[float, float]:
        """(width, height) of the native coordinate frame, for 'box inside the image' checks."""
        raise NotImplementedError

    # -- whole answers ------------------------------------------------------------------------------------
    def render_answer(self, image: int, box: Sequence[float]) -> str:
        return f"<answer>{self.render_content(image, box)}</answer>"

    def render_completion(self, reasoning: str, image: int, box: Sequence[float]) -> str:
        return f"<think>{reasoning}</think>\n{self.render_answer(image, box)}"

    def parse(self, text: object, strict: bool = True) -> ParseResult:
        """Parse a completion. Never raises.

        strict: the answer must sit in exactly one ``<answer>`` block. Non-strict (for scoring third-party
        outputs that were never asked for tags): without an ``<answer>`` block the whole text is read leniently
        (the dialect's box syntax anywhere, the image from phrases such as 'Image-2' or 'the second image').
        """
        if not isinstance(text, str):
            return NoAnswer("not text")
        if len(text) > MAX_COMPLETION_CHARS:
            return NoAnswer(f"output longer than {MAX_COMPLETION_CHARS} characters")
        blocks = ANSWER_RE.findall(text)
        if len(blocks) > 1:
            return NoAnswer("several <answer> blocks")
        if len(blocks) == 1:
            return self.parse_content(blocks[0])
        if strict:
            return NoAnswer("no <answer>...</answer> block")
        return self.parse_free_text(text)

    def parse_free_text(self, text: str) -> ParseResult:
        return self.parse_content(text)

    def check_answer(
        self, result: ParseResult, num_images: int, resized_wh: tuple[int, int] | None = None
    ) -> str:
        """Return '' when ``result`` is a complete valid answer (image in range, non-empty box inside the
        image), else the reason it is not."""
        if not isinstance(result, Answer):
            return result.reason
        if result.image is None:
            return "no image index"
        if not 1 <= result.image <= num_images:
            return f"image {result.image} out of range 1..{num_images}"
        w, h = self.image_extent(resized_wh)
        if not B.is_valid_box(result.box, w, h):
            return "box empty, inverted or outside the image"
        return ""


def check_format(text: object) -> str:
    """'' when the text is exactly one ``<think>…</think>`` holding some reasoning (not only whitespace)
    followed by one ``<answer>…</answer>`` (whitespace around them allowed, nothing else), else the reason.
    Content: :meth:`Dialect.exact_content_error` (the exact form) and :meth:`Dialect.check_answer` (validity)."""
    if not isinstance(text, str):
        return "not text"
    if len(text) > MAX_COMPLETION_CHARS:
        return "output too long"
    if text.count("<think>") != 1 or text.count("</think>") != 1:
        return "needs exactly one <think>...</think>"
    if text.count("<answer>") != 1 or text.count("</answer>") != 1:
        return "needs exactly one <answer>...</answer>"
    if not re.fullmatch(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", text, re.S):
        return "must be <think>...</think> then <answer>...</answer> and nothing else"
    if not THINK_RE.search(text).group(1).strip():  # type: ignore[union-attr]
        return "empty <think></think>: the reasoning is part of the format"
    return ""


class Qwen25Dialect(Dialect):
    """``{"image": k, "bbox_2d": [x1, y1, x2, y2]}`` in absolute pixels of the processor-resized image."""

    name = "qwen2_5_vl"
    coords = "pixels"
    _BRACKET_BOX_RE = re.compile(
        r"\[\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*\]"
    )

    def render_content(self, image: int, box: Sequence[float]) -> str:
        x1, y1, x2, y2 = (round(v) for v in box)
        return json.dumps({"image": int(image), "bbox_2d": [x1, y1, x2, y2]})

    def parse_content(self, content: str) -> ParseResult:
        text = content.strip()
        fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.S)
        if fence:
            text = fence.group(1)
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return self.parse_free_text(content)
        if isinstance(obj, list):
            if len(obj) == 4 and _finite4(obj):
                return Answer(None, _finite4(obj))  # type: ignore[arg-type]
            if len(obj) != 1:
                return NoAnswer("several boxes" if len(obj) > 1 else "empty answer")
            obj = obj[0]
        if not isinstance(obj, dict):
            return NoAnswer("answer is not a JSON object")
        raw_box = obj.get("bbox_2d", obj.get("bbox"))
        if not isinstance(raw_box, list):
            return NoAnswer("no bbox_2d list")
        if raw_box and isinstance(raw_box[0], list):
            if len(raw_box) != 1:
                return NoAnswer("several boxes")
            raw_box = raw_box[0]
        box = _finite4(raw_box)
        if box is None:
            return NoAnswer("bbox_2d is not 4 numbers")
        image = obj.get("image")
        if image is None:
            return Answer(None, box)
        if isinstance(image, str):
            mentions = find_image_mentions(image) or ([int(image)] if image.strip().isdigit() else [])
            if len(set(mentions)) != 1:
                return NoAnswer(f"unreadable image {image!r}")
            image = mentions[0]
        if isinstance(image, bool) or not isinstance(image, int | float) or not float(image).is_integer():
            return NoAnswer(f"image is not an integer: {image!r}")
        return Answer(int(image), box)

    def exact_content_error(self, content: str) -> str:
        try:
            obj = json.loads(content)
        except (ValueError, RecursionError):
            return "answer is not a JSON object"
        if not isinstance(obj, dict) or not isinstance(obj.get("bbox_2d"), list) or "image" not in obj:
            return 'answer must be {"image": k, "bbox_2d": [x1, y1, x2, y2]}'
        image = obj["image"]
        if isinstance(image, bool) or not isinstance(image, int):
            return f"image must be a JSON integer, got {image!r}"[:80]
        if len(obj["bbox_2d"]) != 4 or any(isinstance(v, bool | list | dict | str) for v in obj["bbox_2d"]):
            return "bbox_2d must be 4 numbers"
        return ""

    def parse_free_text(self, text: str) -> ParseResult:
        found = {_finite4(m.groups()) for m in self._BRACKET_BOX_RE.finditer(text)}
        if not found:
            return NoAnswer("no box found")
        if None in found:
            return NoAnswer("coordinate not finite or absurdly large")
        if len(found) > 1:
            return NoAnswer("several boxes")
        images = set(find_image_mentions(text))
        return Answer(images.pop() if len(images) == 1 else None, found.pop())  # type: ignore[arg-type]

    def from_normalized(
        self, box: Sequence[float], resized_wh: tuple[int, int] | None = None
    ) -> tuple[int, ...]:
        if resized_wh is None:
            raise ValueError("qwen2_5_vl coordinates need the resized image size (width, height)")
        return B.normalized_to_pixels(box, *resized_wh)

    def to_normalized(self, box: Sequence[float], resized_wh: tuple[int, int] | None = None) -> B.Box:
        if resized_wh is None:
            raise ValueError("qwen2_5_vl coordinates need the resized image size (width, height)")
        return B.pixels_to_normalized(box, *resized_wh)

    def image_extent(self, resized_wh: tuple[int, int] | None = None) -> tuple[float, float]:
        if resized_wh is None:
            raise ValueError("qwen2_5_vl coordinates need the resized image size (width, height)")
        return float(resized_wh[0]), float(resized_wh[1])


class Qwen2Dialect(Dialect):
    """``Image-k <|box_start|>(x1,y1),(x2,y2)<|box_end|>`` in integers of [0, 1000)."""

    name = "qwen2_vl"
    coords = "qwen2"
    _PAIR_BOX_RE = re.compile(
        r"\(\s*("
        + _NUM
        + r")\s*,\s*("
        + _NUM
        + r")\s*\)\s*,\s*\(\s*("
        + _NUM
        + r")\s*,\s*("
        + _NUM
        + r")\s*\)"
    )

    _EXACT_RE = re.compile(
        r"\s*Image-\d+\s*<\|box_start\|>\s*\(\s*\d+\s*,\s*\d+\s*\)\s*,\s*\(\s*\d+\s*,\s*\d+\s*\)\s*<\|box_end\|>\s*"
    )

    def render_content(self, image: int, box: Sequence[float]) -> str:
        x1, y1, x2, y2 = (round(v) for v in box)
        return f"Image-{int(image)} <|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"

    def exact_content_error(self, content: str) -> str:
        if self._EXACT_RE.fullmatch(content):
            return ""
        return "answer must be Image-k <|box_start|>(x1,y1),(x2,y2)<|box_end|> and nothing else"

    def parse_content(self, content: str) -> ParseResult:
        found = {_finite4(m.groups()) for m in self._PAIR_BOX_RE.finditer(content)}
        if not found:
            return NoAnswer("no (x1,y1),(x2,y2) box")
        if None in found:
            return NoAnswer("coordinate not finite or absurdly large")
        if len(found) > 1:
            return NoAnswer("several boxes")
        outside_boxes = self._PAIR_BOX_RE.sub(" ", content)
        images = set(find_image_mentions(outside_boxes))
        if len(images) > 1:
            return NoAnswer("several images named")
        return Answer(images.pop() if images else None, found.pop())  # type: ignore[arg-type]

    def from_normalized(
        self, box: Sequence[float], resized_wh: tuple[int, int] | None = None
    ) -> tuple[int, ...]:
        return B.normalized_to_qwen2(box)

    def to_normalized(self, box: Sequence[float], resized_wh: tuple[int, int] | None = None) -> B.Box:
        return B.qwen2_to_normalized(box)

    def image_extent(self, resized_wh: tuple[int, int] | None = None) -> tuple[float, float]:
        return float(B.QWEN2_SCALE), float(B.QWEN2_SCALE)


DIALECTS: dict[str, Dialect] = {d.name: d for d in (Qwen25Dialect(), Qwen2Dialect())}


def get_dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown answer dialect {name!r}; choose from {', '.join(DIALECTS)}") from None


# --- the official MIG-Bench lenient parser -----------------------------------------------------------------

_INT = r"\d+"
_FLT = r"\d+\.\d+"
_OFFICIAL_PATTERNS = [
    re.compile(rf"\(({_INT}),({_INT})\),\(({_INT}),({_INT})\)"),
    re.compile(rf"\[({_FLT}),\s*({_FLT}),\s*({_FLT}),\s*({_FLT})\]"),
    re.compile(rf"\(({_FLT}),\s*({_FLT})\),\s*\(({_FLT}),\s*({_FLT})\)"),
    re.compile(rf"\(({_FLT}),\s*({_FLT}),\s*({_FLT}),\s*({_FLT})\)"),
    re.compile(rf"\[({_INT}),\s*({_INT}),\s*({_INT}),\s*({_INT})\]"),
    re.compile(rf"<box>({_INT})\s+({_INT})\s+({_INT})\s+({_INT})</box>"),
]
# Integer patterns are 0-1000 coordinates: a value of 1 is divided even when there are several matches
# (observed in the reference run: "(1,941),(100,999)(1,941),..." scored as x1 = 0.001).
_OFFICIAL_INT_PATTERNS = (_OFFICIAL_PATTERNS[0], _OFFICIAL_PATTERNS[4], _OFFICIAL_PATTERNS[5])


def official_box(text: object) -> tuple[float, float, float, float]:
    """The box the official MIG-Bench scorer reads from raw model text, in [0, 1] units. Never raises.

    Patterns are tried in order and the first that matches anything wins. With exactly one match each value
    ``>= 1`` is divided by 1000; with several matches each value ``> 1`` is, and the first box is used —
    except for the integer patterns, where every value ``>= 1`` is divided whatever the count (what the
    reference runs show). No match gives ``(0, 0, 0, 0)``.
    """
    if not isinstance(text, str):
        return (0.0, 0.0, 0.0, 0.0)
    try:
        for pattern in _OFFICIAL_PATTERNS:
            matches = pattern.findall(text)
            if not matches:
                continue
            first = [float(v) for v in matches[0]]
            if len(matches) == 1 or pattern in _OFFICIAL_INT_PATTERNS:
                vals = [v / 1000 if v >= 1 else v for v in first]
            else:
                vals = [v / 1000 if v > 1 else v for v in first]
            if all(math.isfinite(v) for v in vals):
                return tuple(vals)  # type: ignore[return-value]
            break
    except (ValueError, OverflowError):
        pass
    return (0.0, 0.0, 0.0, 0.0)
