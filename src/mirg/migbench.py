"""MIG-Bench: the ten-task registry and loaders for both releases.

* ``MIG_data.json`` (original, 4,295 items): ``answer`` floats in [0, 1].
* ``revised_MIG_bench.json`` (revised, 4,276 items): ``answer`` integers in [0, 1000].

Both become :class:`~mirg.sample.Sample` records with normalized boxes and stable ids
(``<task>-<8 hex of sha1(image paths without a leading ./, question)>``, with ``-2``, ``-3`` for exact repeats). The ground-truth box is
kept exactly as released, even where it is inverted or leaves [0, 1] (seven items of the original release), because the
official scorer scores against it; such items carry ``meta["gt_box_valid"] = False``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirg.answers import find_image_mentions
from mirg.boxes import is_valid_box
from mirg.errors import DataError
from mirg.jsonio import iter_json_array
from mirg.sample import RefBox, Sample


@dataclass(frozen=True)
class TaskInfo:
    """One MIG-Bench task: its key, the column name papers use, its group, and where its target image is
    stated (``"question"``: the last image named in the question; ``"additional_info"``; or a fixed index)."""

    key: str
    column: str
    group: str
    target: str | int


# Paper column order (Migician, UniVG-R1, MIRG-RL tables).
TASKS: tuple[TaskInfo, ...] = (
    TaskInfo("diff", "Static", "spontaneous/difference", "question"),
    TaskInfo("view_diff", "Robust", "spontaneous/difference", 2),
    TaskInfo("common_object", "Common", "spontaneous/similarity", "question"),
    TaskInfo("object_tracking", "OT", "referential/visual", "question"),
    TaskInfo("multi_view", "MV", "referential/visual", "question"),
    TaskInfo("region", "Region", "referential/visual", 1),
    TaskInfo("refer_grounding", "Refer", "referential/visual", 2),
    TaskInfo("group_grounding", "GG", "referential/textual", "additional_info"),
    TaskInfo("reasoning", "Reason", "referential/visual+textual", 2),
    TaskInfo("correspondence", "Co-Re", "referential/visual+textual", 2),
)
TASK_BY_KEY: dict[str, TaskInfo] = {t.key: t for t in TASKS}
TASK_ORDER: tuple[str, ...] = tuple(t.key for t in TASKS)

_REF_BOX_RE = re.compile(r"<\|box_start\|>\s*\((\d+),\s*(\d+)\),\s*\((\d+),\s*(\d+)\)\s*<\|box_end\|>")
BENCH_KEYS = ("task", "images", "question", "answer")


def column_name(task: str) -> str:
    """The paper column for a MIG-Bench task, or the task key itself for other tasks (e.g. MIG-Synth's)."""
    return TASK_BY_KEY[task].column if task in TASK_BY_KEY else task


def ordered_tasks(tasks: list[str] | set[str]) -> list[str]:
    """MIG-Bench tasks in paper order first, then any others alphabetically."""
    present = set(tasks)
    return [t for t in TASK_ORDER if t in present] + sorted(present - set(TASK_ORDER))


def target_image_of(item: dict[str, Any]) -> int | None:
    """The 1-based target image of a MIG-Bench item, or None when neither the question nor additional_info says."""
    info = TASK_BY_KEY.get(item["task"])
    n = len(item["images"])
    if info is None:
        return None
    if isinstance(info.target, int):
        return info.target if info.target <= n else None
    text = item.get("question", "") if info.target == "question" else item.get("additional_info", "") or ""
    mentions = find_image_mentions(text)
    if info.target == "additional_info" and len(set(mentions)) != 1:
        return None
    if not mentions or not 1 <= mentions[-1] <= n:
        return None
    return mentions[-1]


def is_bench_json(path: str | Path) -> bool:
    """True for a MIG-Bench style JSON array file (as opposed to a Sample JSONL)."""
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        return False
    try:
        with path.open(encoding="utf-8") as fh:
            head = fh.read(4096).lstrip()
    except OSError:
        return False
    return head.startswith("[")


def load_bench(path: str | Path, release: str | None = None) -> list[Sample]:
    """Load a MIG-Bench JSON file (either release) into Samples.

    ``release`` is ``"original"`` (boxes in [0, 1]) or ``"revised"`` (boxes in [0, 1000]); by default it is
    detected from the boxes (all integers, some above 1, means revised). Image paths are kept as released, relative to
    the benchmark's image root.
    """
    path = Path(path)
    items = []
    for line, item in iter_json_array(path):
        if not isinstance(item, dict):
            raise DataError(f"expected a JSON object, got {type(item).__name__}", path=path, line=line)
        missing = [k for k in BENCH_KEYS if k not in item]
        if missing:
            raise DataError(f"missing field(s): {', '.join(missing)}", path=path, line=line)
        ans = item["answer"]
        if not (isinstance(ans, list) and len(ans) == 4 and all(isinstance(v, int | float) for v in ans)):
            raise DataError(f"must be 4 numbers, got {ans!r}", path=path, line=line, field="answer")
        if not isinstance(item["images"], list) or not item["images"]:
            raise DataError("must be a non-empty list of image paths", path=path, line=line, field="images")
        if not isinstance(item["question"], str) or not isinstance(item["task"], str):
            raise DataError("'task' and 'question' must be strings", path=path, line=line)
        items.append(item)
    if release is None:
        values = [v for it in items for v in it["answer"]]
        revised = all(isinstance(v, int) for v in values) and any(v > 1 for v in values)
        release = "revised" if revised else "original"
    if release not in ("original", "revised"):
        raise ValueError(f"release must be 'original' or 'revised', got {release!r}")
    scale = 1000.0 if release == "revised" else 1.0

    samples: list[Sample] = []
    seen: Counter[str] = Counter()
    for item in items:
        paths = [p.removeprefix("./") for p in item["images"]]  # the original release prefixes "./"
        digest = hashlib.sha1(json.dumps([paths, item["question"]]).encode()).hexdigest()[:8]
        base = f"{item['task']}-{digest}"
        seen[base] += 1
        sid = base if seen[base] == 1 else f"{base}-{seen[base]}"
        box = tuple(float(v) / scale for v in item["answer"])
        ref_boxes = []
        if item["task"] in ("object_tracking", "multi_view"):
            m = _REF_BOX_RE.search(item["question"])
            if m:
                ref = tuple(int(v) / 1000.0 for v in m.groups())
                if is_valid_box(ref):
                    ref_boxes.append(RefBox(1, ref))  # type: ignore[arg-type]
        samples.append(
            Sample(
                id=sid,
                task=item["task"],
                images=list(item["images"]),
                question=item["question"],
                target_image=target_image_of(item),
                target_box=box,  # type: ignore[arg-type]
                ref_boxes=ref_boxes,
                source=f"MIG-Bench/{release}",
                meta={
                    "answer_raw": list(item["answer"]),
                    "additional_info": item.get("additional_info", ""),
                    "need_format": item.get("need_format"),
                    "gt_box_valid": is_valid_box(box),
                },
            )
        )
    return samples


def load_samples(path: str | Path) -> list[Sample]:
    """Samples from either a MIG-Bench JSON array (either release) or a mirg Sample JSONL."""
    from mirg.sample import read_samples

    return load_bench(path) if is_bench_json(path) else read_samples(path)
