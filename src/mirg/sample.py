"""The Sample record shared by every dataset mirg reads or writes (docs/contract.md), with JSONL I/O.

Coordinates: every box in a Sample is normalized ``[x1, y1, x2, y2]`` in [0, 1], relative to the width and
height of the image it belongs to (its original size). Image indices are 1-based (Image-1 .. Image-N).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirg.boxes import Box, is_number
from mirg.errors import DataError
from mirg.jsonio import iter_jsonl_records, require_kind

REQUIRED_FIELDS = ("id", "task", "images", "question")


@dataclass(frozen=True)
class ObjectAnn:
    """One annotated object in one image: category, free-form attributes (colour, size, ...), normalized box."""

    category: str
    box: Box
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "attributes": dict(self.attributes), "box": list(self.box)}


@dataclass(frozen=True)
class RefBox:
    """A reference box given in the question (e.g. 'the object marked in Image-1'): 1-based image, normalized box."""

    image: int
    box: Box

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "box": list(self.box)}


@dataclass
class Sample:
    """One multi-image grounding item.

    ``target_image`` is 1-based or ``None`` when unknown; ``target_box`` is normalized or ``None``.
    ``objects`` is empty or holds one list per image. ``relations`` are image-level statements, each a dict
    with at least ``text``. ``meta`` carries anything else a source provides (kept, never interpreted).
    """

    id: str
    task: str
    images: list[str]
    question: str
    target_image: int | None = None
    target_box: Box | None = None
    ref_boxes: list[RefBox] = field(default_factory=list)
    objects: list[list[ObjectAnn]] = field(default_factory=list)
    relations: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return len(self.images)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "images": list(self.images),
            "question": self.question,
            "target_image": self.target_image,
            "target_box": list(self.target_box) if self.target_box is not None else None,
            "ref_boxes": [r.to_dict() for r in self.ref_boxes],
            "objects": [[o.to_dict() for o in per_image] for per_image in self.objects],
            "relations": [dict(r) for r in self.relations],
            "source": self.source,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: Any, path: str | Path | None = None, line: int | None = None) -> Sample:
        """Validate a decoded record; raise DataError naming file, line, field and why."""

        def fail(why: str, fld: str | None = None) -> DataError:
            return DataError(why, path=path, line=line, field=fld)

        if not isinstance(d, dict):
            raise fail(f"expected a JSON object, got {type(d).__name__}")
        missing = [k for k in REQUIRED_FIELDS if k not in d]
        if missing:
            raise fail(f"missing required field(s): {', '.join(missing)}")
        for key in ("id", "task"):
            if not isinstance(d[key], str) or not d[key]:
                raise fail("must be a non-empty string", key)
        images, question = d["images"], d["question"]
        if not isinstance(images, list) or not images or not all(isinstance(p, str) and p for p in images):
            raise fail("must be a non-empty list of image paths", "images")
        if not isinstance(question, str):
            raise fail("must be a string", "question")
        n = len(images)

        target_image = d.get("target_image")
        if target_image is not None:
            if isinstance(target_image, bool) or not isinstance(target_image, int):
                raise fail(f"must be an integer or null, got {target_image!r}", "target_image")
            if not 1 <= target_image <= n:
                raise fail(f"{target_image} is out of range 1..{n} (1-based, {n} images)", "target_image")

        target_box = None if d.get("target_box") is None else _check_box(d["target_box"], fail, "target_box")

        ref_boxes = []
        for i, r in enumerate(d.get("ref_boxes") or []):
            fld = f"ref_boxes[{i}]"
            if not isinstance(r, dict) or "image" not in r or "box" not in r:
                raise fail("must be an object with 'image' and 'box'", fld)
            img = r["image"]
            if isinstance(img, bool) or not isinstance(img, int) or not 1 <= img <= n:
                raise fail(f"image {img!r} is out of range 1..{n}", fld + ".image")
            ref_boxes.append(RefBox(img, _check_box(r["box"], fail, fld + ".box")))

        objects: list[list[ObjectAnn]] = []
        raw_objects = d.get("objects") or []
        if not isinstance(raw_objects, list):
            raise fail("must be a list with one list of objects per image", "objects")
        if raw_objects and len(raw_objects) != n:
            raise fail(f"has {len(raw_objects)} per-image lists but the sample has {n} images", "objects")
        for k, per_image in enumerate(raw_objects):
            if not isinstance(per_image, list):
                raise fail("must be a list of objects", f"objects[{k}]")
            anns = []
            for j, o in enumerate(per_image):
                fld = f"objects[{k}][{j}]"
                if not isinstance(o, dict) or not isinstance(o.get("category"), str):
                    raise fail("must be an object with a string 'category'", fld)
                attrs = o.get("attributes") or {}
                if not isinstance(attrs, dict):
                    raise fail("must be an object", fld + ".attributes")
                anns.append(ObjectAnn(o["category"], _check_box(o.get("box"), fail, fld + ".box"), attrs))
            objects.append(anns)

        relations = []
        for i, r in enumerate(d.get("relations") or []):
            if isinstance(r, str):
                r = {"text": r}
            if not isinstance(r, dict) or not isinstance(r.get("text"), str):
                raise fail("must be a string or an object with a string 'text'", f"relations[{i}]")
            relations.append(r)

        source = d.get("source", "")
        if not isinstance(source, str):
            raise fail("must be a string", "source")
        meta = d.get("meta") or {}
        if not isinstance(meta, dict):
            raise fail("must be an object", "meta")
        return cls(
            id=d["id"],
            task=d["task"],
            images=list(images),
            question=question,
            target_image=target_image,
            target_box=target_box,
            ref_boxes=ref_boxes,
            objects=objects,
            relations=relations,
            source=source,
            meta=meta,
        )


def _check_box(value: Any, fail: Any, fld: str) -> Box:
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise fail(f"must be a list of 4 numbers [x1, y1, x2, y2], got {value!r}", fld)
    if not all(is_number(v) for v in value):
        raise fail(f"must hold finite numbers only, got {str(value)[:120]}", fld)
    x1, y1, x2, y2 = (float(v) for v in value)  # finite: is_number refuses what float() would overflow
    if not all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)):
        raise fail(f"{list(value)} is outside [0, 1] (boxes are stored normalized)", fld)
    if not (x1 < x2 and y1 < y2):
        raise fail(f"{list(value)} is empty or inverted (needs x1 < x2 and y1 < y2)", fld)
    return (x1, y1, x2, y2)


def read_samples(path: str | Path) -> list[Sample]:
    """Read and validate a Sample JSONL file. Ids must be unique within the file. Another kind of file
    (MIG-Bench, predictions, trajectories, ...) is a DataError saying where it belongs."""
    require_kind(path, ("samples",))
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for lineno, record in iter_jsonl_records(path):
        s = Sample.from_dict(record, path=path, line=lineno)
        if s.id in seen:
            raise DataError(
                f"duplicate id {s.id!r} (first on line {seen[s.id]})", path=path, line=lineno, field="id"
            )
        seen[s.id] = lineno
        samples.append(s)
    return samples


def write_samples(samples: Iterable[Sample], path: str | Path) -> None:
    """Write Samples as JSONL, one compact record per line, UTF-8, key order fixed (byte-stable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for s in samples:
            fh.write(json.dumps(s.to_dict(), ensure_ascii=False) + "\n")


def load_dataset(path: str | Path) -> Any:
    """Load a Sample JSONL as a Hugging Face ``datasets.Dataset`` (validated first)."""
    import datasets

    samples = read_samples(path)
    return datasets.Dataset.from_list([s.to_dict() for s in samples])
