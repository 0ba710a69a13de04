"""Loader for MGrounding-630k conversation records (Migician's training data) into Samples.

A record (JSON array file, or JSONL)::

    {"id": "5229016_8929009_...", "images": ["./MGrounding-630k/Group_Grounding/SA-1B/sa_5229016.jpg", ...],
     "conversations": [{"from": "human", "value": "<image>\\n<image>\\n...Give the bounding box of ..."},
                       {"from": "gpt", "value": "It's in the third image. <|box_start|>(316,58),(764,999)<|box_end|>"},
                       ...more human/gpt turns about the same images...],
     "type": "gg_train"}

Each human/gpt pair becomes one Sample (id ``<id>`` for the first turn, ``<id>#t<k>`` for turn k > 1; ``#2``,
``#3``... appended when an id repeats). The question is the human text without ``<image>`` tokens. The answer's
``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` is in [0, 1000) of the image (Qwen2-VL convention) and becomes a
normalized ``target_box``; the target image is the one the answer names ("the third image", "Image-3"), or
the only image. Turns whose answer names no single image or holds no single box are skipped and counted.
Image paths stay as written; they are relative to ``image_root`` (default: the file's folder).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from mirg.answers import find_image_mentions, get_dialect
from mirg.boxes import clip_box, is_valid_box, qwen2_to_normalized
from mirg.errors import DataError
from mirg.jsonio import iter_json_array, iter_jsonl_records, require_kind, sniff
from mirg.sample import Sample

SOURCE = "mgrounding-630k"
_IMAGE_TOKEN_RE = re.compile(r"<image>\s*")


def is_mgrounding(path: str | Path) -> bool:
    """True when the file looks like MGrounding records (a JSON array, or JSONL with ``conversations``)."""
    p = Path(path)
    try:
        with p.open("r", encoding="utf-8-sig") as fh:
            head = fh.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    if head.lstrip().startswith("["):
        return True
    return '"conversations"' in head.split("\n", 1)[0]


def _iter_records(path: Path) -> Any:
    with path.open("r", encoding="utf-8-sig") as fh:
        head = fh.read(64)
    if head.lstrip().startswith("["):
        return iter_json_array(path)
    return iter_jsonl_records(path)


def parse_answer(text: str, num_images: int) -> tuple[int, tuple[float, float, float, float]] | str:
    """(1-based image, normalized box) from a Migician answer, or the reason it has none."""
    res = get_dialect("qwen2_vl").parse_content(text)
    if not res.ok:
        return res.reason  # type: ignore[union-attr]
    image = res.image
    if image is None:
        mentions = set(find_image_mentions(text))
        if len(mentions) > 1:
            return "several images named"
        image = 1 if num_images == 1 else None
    if image is None:
        return "no target image named"
    if not 1 <= image <= num_images:
        return f"image {image} out of range 1..{num_images}"
    box = clip_box(qwen2_to_normalized(res.box))  # type: ignore[arg-type]
    if not is_valid_box(box):
        return "empty or inverted box"
    return image, box


def load_mgrounding(path: str | Path) -> tuple[list[Sample], Counter[str]]:
    """Samples from an MGrounding-630k JSON/JSONL file, and the count of skipped turns by reason."""
    path = Path(path)
    if sniff(path) == "samples":
        raise DataError("this is a Sample file, not MGrounding data: drop --format mgrounding (mirg trajectories "
                        "reads Sample files as they are)", path=path)  # fmt: skip
    require_kind(path, ("mgrounding",))
    samples: list[Sample] = []
    skipped: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for lineno, rec in _iter_records(path):
        if not isinstance(rec, dict):
            raise DataError("expected a JSON object", path=path, line=lineno)
        images, convs = rec.get("images"), rec.get("conversations")
        if not isinstance(images, list) or not images or not all(isinstance(p, str) and p for p in images):
            raise DataError("must be a non-empty list of image paths", path=path, line=lineno, field="images")
        if not isinstance(convs, list):
            raise DataError("must be a list of turns", path=path, line=lineno, field="conversations")
        base = str(rec.get("id") or f"line{lineno}")
        kind = str(rec.get("type") or "mgrounding")
        turns = [c for c in convs if isinstance(c, dict)]
        pairs = [
            (turns[i], turns[i + 1])
            for i in range(0, len(turns) - 1, 2)
            if turns[i].get("from") == "human" and turns[i + 1].get("from") == "gpt"
        ]
        if len(pairs) * 2 != len(turns):
            skipped["unpaired turns"] += 1
        for k, (human, gpt) in enumerate(pairs, start=1):
            question = _IMAGE_TOKEN_RE.sub("", str(human.get("value", ""))).strip()
            parsed = parse_answer(str(gpt.get("value", "")), len(images))
            if isinstance(parsed, str):
                skipped[parsed] += 1
                continue
            image, box = parsed
            sid = base if k == 1 else f"{base}#t{k}"
            seen[sid] += 1
            if seen[sid] > 1:
                sid = f"{sid}#{seen[sid]}"
            samples.append(
                Sample(
                    id=sid,
                    task=kind,
                    images=list(images),
                    question=question,
                    target_image=image,
                    target_box=box,
                    source=SOURCE,
                    meta={"answer": str(gpt.get("value", "")), "turn": k, "record_id": base},
                )
            )
    return samples, skipped
