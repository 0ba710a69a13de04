"""Reading predictions: mirg's predictions JSONL, and third-party MIG-Bench result files matched to the bench.

mirg JSONL (written by ``mirg eval``), one object per line:
``{"id", "task", "raw_output", "pred_image": int|null, "pred_box": [x1,y1,x2,y2] normalized|null,
"parse_error": str|null, "seconds": float}``. Only ``id`` and ``raw_output`` are required; without the parsed
fields the scorer parses ``raw_output`` itself. A ``pred_box`` value beyond +-:data:`PRED_BOX_LIMIT` is refused
(0-1000 or pixel units, not normalized), and so is a non-finite one.

Third-party results (the format of the result files released with MIG-Bench): a JSON array per file, records with
``task``, ``question`` (the bench question plus whatever prompt suffix that run appended), ``answer`` (raw text)
and ``groundtruth`` (0-1000); a trailing summary dict is ignored. Records are matched to bench items by task,
ground-truth box and question (the bench question, whitespace-normalized, must begin the record's question).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from mirg.boxes import is_number
from mirg.errors import DataError
from mirg.jsonio import iter_json_array, iter_jsonl_records, require_kind
from mirg.sample import Sample
from mirg.scoring import Prediction

PRED_BOX_LIMIT = 10.0  # a normalized pred_box stays within 10 image sizes; beyond, it is another unit


def load_predictions(path: str | Path, samples: list[Sample]) -> list[Prediction]:
    """Load predictions from a mirg JSONL, a third-party results JSON (told apart by content, not extension),
    or a folder of result JSONs; a ``mirg eval`` folder stands for its ``predictions.jsonl``."""
    path = Path(path)
    if path.is_dir() and (path / "predictions.jsonl").is_file():
        path = path / "predictions.jsonl"
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise DataError("folder holds no *.json result files", path=path)
        return match_results(files, samples)
    if not path.exists():
        raise DataError("file not found", path=path)
    kind = require_kind(path, ("predictions", "results"))
    if kind == "predictions" or (kind == "unknown" and path.suffix.lower() == ".jsonl"):
        return read_predictions_jsonl(path, samples)
    return match_results([path], samples)


def read_predictions_jsonl(path: str | Path, samples: list[Sample] | None = None) -> list[Prediction]:
    known = {s.id for s in samples} if samples is not None else None
    seen: dict[str, int] = {}
    out: list[Prediction] = []
    for line, rec in iter_jsonl_records(path, torn_tail=True):

        def fail(why: str, fld: str | None = None, line: int = line) -> DataError:
            return DataError(why, path=path, line=line, field=fld)

        if not isinstance(rec, dict):
            raise fail(f"expected a JSON object, got {type(rec).__name__}")
        pid = rec.get("id")
        if not isinstance(pid, str) or not pid:
            raise fail("missing or not a non-empty string", "id")
        raw = rec.get("raw_output")
        if not isinstance(raw, str):
            raise fail("missing or not a string", "raw_output")
        if pid in seen:
            raise fail(f"duplicate prediction for id {pid!r} (first on line {seen[pid]})", "id")
        if known is not None and pid not in known:
            raise fail(f"id {pid!r} is not in the benchmark/data being scored", "id")
        seen[pid] = line
        image = rec.get("pred_image")
        if image is not None and (isinstance(image, bool) or not isinstance(image, int)):
            raise fail(f"must be an integer or null, got {image!r}", "pred_image")
        box = rec.get("pred_box")
        if box is not None:
            if not (isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box)):
                raise fail(f"must be 4 numbers (normalized) or null, got {box!r}"[:200], "pred_box")
            if not all(-PRED_BOX_LIMIT <= v <= PRED_BOX_LIMIT for v in box):
                raise fail(
                    f"{box} is not normalized to [0, 1] (0-1000 or pixel units?): convert it, or drop pred_box and "
                    "pred_image so the scorer reads raw_output with --dialect",
                    "pred_box",
                )
            box = tuple(float(v) for v in box)
        err = rec.get("parse_error")
        if "pred_image" in rec or "pred_box" in rec:
            err = err or ("no answer" if image is None and box is None else None)
        out.append(Prediction(pid, raw, image, box, err, origin=f"{path}:{line}"))  # type: ignore[arg-type]
    return out


def _norm_q(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _gt_key(values: Any, scale: float) -> tuple[int, ...] | None:
    try:
        return tuple(round(float(v) / scale * 1000) for v in values)
    except (TypeError, ValueError, OverflowError):  # Infinity, or an integer too large for a float
        return None


def match_results(files: list[Path], samples: list[Sample]) -> list[Prediction]:
    """Match third-party result records to bench Samples (one-to-one)."""
    index: dict[tuple[str, tuple[int, ...] | None], list[Sample]] = defaultdict(list)
    for s in samples:
        index[(s.task, _gt_key(s.target_box or (), 1.0))].append(s)
    used: set[str] = set()
    out: list[Prediction] = []
    for f in files:
        for line, rec in iter_json_array(f):
            if isinstance(rec, dict) and "question" not in rec and "answer" not in rec:
                continue  # the trailing per-task summary dict
            if not isinstance(rec, dict):
                raise DataError(f"expected a JSON object, got {type(rec).__name__}", path=f, line=line)
            missing = [k for k in ("task", "question", "answer", "groundtruth") if k not in rec]
            if missing:
                raise DataError(f"missing field(s): {', '.join(missing)}", path=f, line=line)
            if not isinstance(rec["answer"], str) or not isinstance(rec["question"], str):
                raise DataError("'question' and 'answer' must be strings", path=f, line=line)
            gt = rec["groundtruth"]
            if not (isinstance(gt, list) and len(gt) == 4):
                raise DataError(f"must be 4 numbers, got {gt!r}", path=f, line=line, field="groundtruth")
            scale = 1000.0 if any(isinstance(v, int | float) and v > 1 for v in gt) else 1.0
            candidates = index.get((rec["task"], _gt_key(gt, scale)), [])
            q = _norm_q(rec["question"])
            fits = [s for s in candidates if s.id not in used and q.startswith(_norm_q(s.question))]
            if not fits:
                why = (
                    "already matched by an earlier record"
                    if candidates
                    else "no bench item has this task and box"
                )
                raise DataError(
                    f"no bench item matches task={rec['task']!r}, groundtruth={gt}, question={rec['question'][:60]!r}"
                    f" ({why}); is this the right bench file?",
                    path=f,
                    line=line,
                )
            best = max(fits, key=lambda s: len(_norm_q(s.question)))
            used.add(best.id)
            extra = {k: rec[k] for k in ("iou", "filter_answer") if k in rec}
            out.append(Prediction(best.id, rec["answer"], origin=f"{f}:{line}", extra=extra))
    return out
