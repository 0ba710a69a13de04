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
from mirg.boxes import is_number, is_valid_box
from mirg.errors import DataError
from mirg.jsonio import iter_json_array, require_kind
from mirg.sample import RefBox, Sample, read_samples


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
    if not mentions or (info.target == "additional_info" and len(set(mentions)) != 1):
        return None
    return mentions[-1] if 1 <= mentions[-1] <= n else None


def _check_item(item: Any, fail: Any) -> dict[str, Any]:
    """Validate one MIG-Bench record (types only; units are checked once the release is known)."""
    if not isinstance(item, dict):
        raise fail(f"expected a JSON object, got {type(item).__name__}")
    missing = [k for k in BENCH_KEYS if k not in item]
    if missing:
        raise fail(f"missing field(s): {', '.join(missing)}")
    ans = item["answer"]
    if not (isinstance(ans, list) and len(ans) == 4 and all(is_number(v) for v in ans)):
        raise fail(f"must be 4 finite numbers [x1, y1, x2, y2], got {ans!r}"[:200], "answer")
    images = item["images"]
    if not isinstance(images, list) or not images or not all(isinstance(p, str) and p for p in images):
        raise fail("must be a non-empty list of image paths (strings)", "images")
    if not isinstance(item["task"], str) or not item["task"]:
        raise fail("must be a non-empty string", "task")
    if not isinstance(item["question"], str):
        raise fail("must be a string", "question")
    if not isinstance(item.get("additional_info", ""), str | None):
        raise fail("must be a string", "additional_info")
    if not isinstance(item.get("need_format"), bool | None):
        raise fail("must be true, false or absent", "need_format")
    return item


def _release_of(answers: list[list[Any]]) -> str:
    """The release a file's schema says: 'revised' (integer answers in [0, 1000]) when more records vote for it
    than for 'original' (float answers in [0, 1]); records fitting neither or both do not vote."""
    revised = sum(all(isinstance(v, int) for v in a) and max(a) > 1 for a in answers)
    original = sum(any(isinstance(v, float) for v in a) and max(abs(v) for v in a) <= 1.5 for a in answers)
    return "revised" if revised > original else "original"


def _check_units(answer: list[Any], release: str, fail: Any, majority: str) -> None:
    if release == "revised" and not all(float(v).is_integer() and 0 <= v <= 1000 for v in answer):
        raise fail(f"{answer} is not 4 integers in [0, 1000], as every answer of the revised release is{majority}",
                   "answer")  # fmt: skip
    if release == "original" and not all(-0.5 <= v <= 1.5 for v in answer):
        raise fail(f"{answer} is not in [0, 1] units, as every answer of the original release is{majority}",
                   "answer")  # fmt: skip


def load_bench(path: str | Path, release: str | None = None) -> list[Sample]:
    """Load a MIG-Bench JSON file (either release) into Samples.

    ``release`` is ``"original"`` (boxes in [0, 1]) or ``"revised"`` (integers in [0, 1000]); by default the
    file's schema decides (:func:`_release_of`: the type and range of the answers, by majority of records), and
    then every record must fit it: one odd record is a DataError naming the file, line, item and field, never
    a change of units for the whole file. Image paths are kept as released, relative to the benchmark's
    image root.
    """
    path = Path(path)

    def failing(index: int, line: int) -> Any:
        return lambda why, fld=None: DataError(f"{why} (item {index})", path=path, line=line, field=fld)

    items, lines = [], []
    for index, (line, item) in enumerate(iter_json_array(path)):
        items.append(_check_item(item, failing(index, line)))
        lines.append(line)
    if not items:
        raise DataError("holds no items (an empty benchmark)", path=path)
    if release not in (None, "original", "revised"):
        raise ValueError(f"release must be 'original' or 'revised', got {release!r}")
    detected = _release_of([it["answer"] for it in items])
    majority = (
        f" (the file's schema: {detected})" if release is None else f" (release {release} was asked for)"
    )
    release = release or detected
    for index, (line, item) in enumerate(zip(lines, items, strict=True)):
        _check_units(item["answer"], release, failing(index, line), majority)
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
                    "additional_info": item.get("additional_info") or "",
                    "need_format": item.get("need_format"),
                    "gt_box_valid": is_valid_box(box),
                },
            )
        )
    return samples


def load_samples(path: str | Path) -> list[Sample]:
    """Samples from either a MIG-Bench JSON array (either release) or a mirg Sample JSONL, told apart by content;
    another kind of file (predictions, trajectories, ...) is a DataError that says where it belongs."""
    kind = require_kind(path, ("migbench", "samples"))
    with Path(path).open("rb") as fh:
        is_array = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
    samples = load_bench(path) if kind == "migbench" or is_array else read_samples(path)
    if not samples:
        raise DataError("holds no records", path=path)
    return samples
