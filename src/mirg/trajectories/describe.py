"""Plain-language pieces shared by the template writer and the teacher hint block: object descriptions,
coarse positions, object look-ups from annotation references.

Coordinates: every box here is normalized ``[x1, y1, x2, y2]`` in [0, 1] (the Sample convention); positions
are a 3x3 grid of the box centre ("top left", "centre", ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mirg.boxes import iou
from mirg.sample import ObjectAnn, Sample


def position(box: Sequence[float]) -> str:
    """Coarse position of a normalized box's centre: 'top left', 'top', ..., 'centre', ..., 'bottom right'."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    return f"{row} {col}".strip() or "centre"


def at_position(box: Sequence[float]) -> str:
    """'at the top left' / 'in the centre'."""
    pos = position(box)
    return "in the centre" if pos == "centre" else f"at the {pos}"


def attribute(o: ObjectAnn, name: str) -> Any:
    """An object's attribute by name; ``shape`` is the category."""
    return o.category if name == "shape" else o.attributes.get(name)


def describe(o: ObjectAnn, with_size: bool = True, attrs: Sequence[str] | None = None) -> str:
    """'small red star' (size, colour, category; only the ones present). ``attrs`` restricts the words."""
    words = []
    keys = ("size", "color", "shape") if attrs is None else attrs
    if with_size and "size" in keys and isinstance(o.attributes.get("size"), str):
        words.append(o.attributes["size"])
    if "color" in keys and isinstance(o.attributes.get("color"), str):
        words.append(o.attributes["color"])
    words.append(o.category if "shape" in keys else "object")
    return " ".join(words)


def article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def signature(o: ObjectAnn) -> tuple[str, Any, Any]:
    """(category, colour, size): what makes two annotations 'the same object' across images."""
    return o.category, o.attributes.get("color"), o.attributes.get("size")


def get_object(sample: Sample, ref: Any) -> ObjectAnn | None:
    """The annotation a relation reference ``{"image": k (1-based), "object": j (0-based)}`` points to."""
    if not isinstance(ref, dict):
        return None
    k, j = ref.get("image"), ref.get("object")
    if not isinstance(k, int) or not isinstance(j, int) or not 1 <= k <= len(sample.objects):
        return None
    per = sample.objects[k - 1]
    return per[j] if 0 <= j < len(per) else None


def target_object(sample: Sample) -> tuple[int, ObjectAnn] | None:
    """(0-based index, annotation) of the target object in the target image, or None (e.g. a region target).

    Taken from ``meta.target_object`` (MIG-Synth), else from a relation whose ``subject`` lies in the target
    image, else the annotation whose box overlaps the target box with IoU >= 0.9.
    """
    t = sample.target_image
    if t is None or not sample.objects or t > len(sample.objects):
        return None
    per = sample.objects[t - 1]
    idx = sample.meta.get("target_object")
    if isinstance(idx, int) and not isinstance(idx, bool) and 0 <= idx < len(per):
        return idx, per[idx]
    for r in sample.relations:
        s = r.get("subject")
        if isinstance(s, dict) and s.get("image") == t and get_object(sample, s) is not None:
            return int(s["object"]), per[int(s["object"])]
    if sample.target_box is not None:
        best = max(range(len(per)), key=lambda i: iou(per[i].box, sample.target_box), default=None)
        if best is not None and iou(per[best].box, sample.target_box) >= 0.9:
            return best, per[best]
    return None


def has_annotations(sample: Sample) -> bool:
    return any(sample.objects) or bool(sample.relations)
