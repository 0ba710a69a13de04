"""Scoring grounding predictions: the official MIG-Bench protocol and mirg's image-aware protocol.

Protocols
---------
``official`` reproduces the MIG-Bench scorer: the first box found in the raw text by the lenient parser
(:func:`mirg.answers.official_box`, values ``>= 1`` divided by 1000), plain IoU against the ground truth in
[0, 1], no image check. ``--y-rescale migician`` applies Migician's post-hoc y stretch first.

``mirg`` is coordinate-aware and image-aware: the box is read in the model family's own coordinates
(qwen2_vl: [0, 1000); qwen2_5_vl: pixels of the processor-resized image) and only counts when the answer names
the right image. Image accuracy is reported on its own, and so is ``box_acc@0.5``: the box alone, whatever
image the answer names (what a coordinate-correct but image-blind scorer would report). Items whose target image is unknown (the original
release's ``diff`` task) cannot be gated; they are scored on the box alone and counted in ``image_unknown``.

Metrics are percentages rounded half-up to two decimals. The average is the unweighted mean over tasks of the
two-decimal per-task values, as the papers' tables compute it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from mirg.answers import Answer, Dialect, official_box
from mirg.boxes import Box, iou
from mirg.migbench import column_name, ordered_tasks
from mirg.sample import Sample

THRESHOLDS = (0.3, 0.5, 0.7)
PROTOCOLS = ("official", "mirg")


@dataclass
class Prediction:
    """A model's output for one sample. ``image`` (1-based) and ``box`` (normalized) are the parsed answer when
    the producer already parsed it (``mirg eval`` does); otherwise the scorer parses ``raw_output``."""

    id: str
    raw_output: str
    image: int | None = None
    box: Box | None = None
    parse_error: str | None = None
    origin: str = ""  # "file:line" for messages
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. a third-party run's own "iou"

    @property
    def parsed(self) -> bool:
        return self.box is not None or self.image is not None or self.parse_error is not None


@dataclass
class ItemScore:
    id: str
    task: str
    iou: float
    image_correct: bool | None  # None: not checked (official protocol, or target image unknown)
    pred_image: int | None = None
    pred_box: Box | None = None
    missing: bool = False
    box_iou: float | None = None  # mirg protocol: IoU of the box whatever image it names (coordinate-aware)


def migician_y_rescale(box: Sequence[float]) -> Box:
    """Migician's post-hoc y stretch in [0, 1] units, kept at the 0.001 resolution of its reference run:
    ``y1 = min(y1 * 1.05, 0.999)``, ``y2 = min(y2 * 1.10, 0.999)``."""
    x1, y1, x2, y2 = box
    return (x1, round(min(y1 * 1.05, 0.999), 3), x2, round(min(y2 * 1.10, 0.999), 3))


Y_RESCALES: dict[str, Callable[[Sequence[float]], Box]] = {"migician": migician_y_rescale}

# (sample, image index 1-based) -> resized (width, height) for pixel-coordinate dialects
SizeFn = Callable[[Sample, int], tuple[int, int]]


def score_official(sample: Sample, pred: Prediction, y_rescale: str | None = None) -> ItemScore:
    box = official_box(pred.raw_output)
    if y_rescale:
        box = Y_RESCALES[y_rescale](box)
    value = iou(box, sample.target_box) if sample.target_box is not None else 0.0
    return ItemScore(sample.id, sample.task, value, None, None, box)


def read_mirg_answer(
    sample: Sample, pred: Prediction, dialect: Dialect | None, size_of: SizeFn | None
) -> tuple[int | None, Box | None]:
    """The predicted (image, normalized box) under the mirg protocol; (None, None) when there is no answer."""
    if pred.parsed:
        return pred.image, pred.box
    if dialect is None:
        raise ValueError("predictions carry raw text only: a dialect is needed to read their coordinates")
    result = dialect.parse(pred.raw_output, strict=False)
    if not isinstance(result, Answer):
        return None, None
    image = result.image
    if dialect.coords == "pixels":
        if image is None or not 1 <= image <= sample.num_images or size_of is None:
            return image, None  # pixels of an unknown image cannot be mapped back
        return image, dialect.to_normalized(result.box, size_of(sample, image))
    return image, dialect.to_normalized(result.box)


def score_mirg(
    sample: Sample, pred: Prediction, dialect: Dialect | None = None, size_of: SizeFn | None = None
) -> ItemScore:
    image, box = read_mirg_answer(sample, pred, dialect, size_of)
    box_iou = iou(box, sample.target_box) if box is not None and sample.target_box is not None else 0.0
    if sample.target_image is None:
        return ItemScore(sample.id, sample.task, box_iou, None, image, box, box_iou=box_iou)
    correct = image == sample.target_image
    return ItemScore(
        sample.id, sample.task, box_iou if correct else 0.0, correct, image, box, box_iou=box_iou
    )


def score_items(
    samples: Iterable[Sample],
    predictions: Iterable[Prediction],
    protocol: str = "mirg",
    *,
    dialect: Dialect | None = None,
    size_of: SizeFn | None = None,
    y_rescale: str | None = None,
    missing: str = "miss",
) -> list[ItemScore]:
    """Score each sample against its prediction (matched by id).

    ``missing``: ``"miss"`` scores a sample without prediction as IoU 0 and wrong image; ``"skip"`` leaves it
    out. A prediction whose id is not among the samples raises KeyError (callers turn that into a DataError).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if y_rescale is not None and y_rescale not in Y_RESCALES:
        raise ValueError(f"unknown y-rescale {y_rescale!r}; choose from {', '.join(Y_RESCALES)}")
    if missing not in ("miss", "skip"):
        raise ValueError("missing must be 'miss' or 'skip'")
    samples = list(samples)
    by_id = {s.id: s for s in samples}
    preds: dict[str, Prediction] = {}
    for p in predictions:
        if p.id not in by_id:
            raise KeyError(p.id)
        preds[p.id] = p
    out: list[ItemScore] = []
    for s in samples:
        p = preds.get(s.id)
        if p is None:
            if missing == "miss":
                if protocol == "mirg":  # a wrong image, unless the target image is unknown (not checked)
                    checked = False if s.target_image is not None else None
                    out.append(ItemScore(s.id, s.task, 0.0, checked, missing=True, box_iou=0.0))
                else:
                    out.append(ItemScore(s.id, s.task, 0.0, None, missing=True))
            continue
        if protocol == "official":
            out.append(score_official(s, p, y_rescale))
        else:
            out.append(score_mirg(s, p, dialect, size_of))
    return out


def _pct(num: float, den: int) -> Decimal:
    if den == 0:
        return Decimal("0.00")
    return (Decimal(repr(num)) * 100 / den).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def aggregate(
    items: Sequence[ItemScore], protocol: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Per-task Acc@0.3/0.5/0.7, mean IoU, n (and image accuracy under ``mirg``), plus the task average."""
    by_task: dict[str, list[ItemScore]] = defaultdict(list)
    for it in items:
        by_task[it.task].append(it)
    tasks: dict[str, dict[str, Any]] = {}
    decimals: dict[str, dict[str, Decimal]] = {}
    for task in ordered_tasks(list(by_task)):
        rows = by_task[task]
        n = len(rows)
        d = {f"acc@{t}": _pct(sum(r.iou >= t for r in rows), n) for t in THRESHOLDS}
        d["miou"] = _pct(sum(r.iou for r in rows), n)
        counts = {"n": n}
        if protocol == "mirg":
            checked = [r for r in rows if r.image_correct is not None]
            d["image_acc"] = _pct(sum(bool(r.image_correct) for r in checked), len(checked))
            d["box_acc@0.5"] = _pct(sum((r.box_iou or 0.0) >= 0.5 for r in rows), n)
            counts["image_unknown"] = n - len(checked)
        decimals[task] = d
        tasks[task] = {k: float(v) for k, v in d.items()} | counts | {"missing": sum(r.missing for r in rows)}
    average: dict[str, Any] = {}
    if decimals:
        for key in next(iter(decimals.values())):
            mean = sum(d[key] for d in decimals.values()) / len(decimals)
            average[key] = float(mean.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    average["n"] = sum(t["n"] for t in tasks.values())
    average["tasks"] = len(tasks)
    return {"protocol": protocol, "options": dict(options or {}), "tasks": tasks, "average": average}


def score(
    samples: Iterable[Sample],
    predictions: Iterable[Prediction],
    protocol: str = "mirg",
    **kwargs: Any,
) -> dict[str, Any]:
    """Score and aggregate in one call (see :func:`score_items` for the keyword options)."""
    items = score_items(samples, predictions, protocol, **kwargs)
    options = {k: (v.name if isinstance(v, Dialect) else v) for k, v in kwargs.items() if k != "size_of"}
    return aggregate(items, protocol, options)


# --- presentation ------------------------------------------------------------------------------------------

_ROWS = (
    ("acc@0.3", "Acc@0.3"),
    ("acc@0.5", "Acc@0.5"),
    ("acc@0.7", "Acc@0.7"),
    ("miou", "mIoU"),
    ("image_acc", "Image acc"),
    ("box_acc@0.5", "Box@0.5 any image"),
    ("n", "n"),
)


def _table(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    tasks = list(metrics["tasks"])
    header = ["metric"] + [column_name(t) for t in tasks] + ["AVG"]
    rows = []
    for key, label in _ROWS:
        if key not in metrics["average"]:
            continue
        values = [metrics["tasks"][t][key] for t in tasks] + [metrics["average"][key]]
        rows.append([label, *(str(v) if key == "n" else f"{v:.2f}" for v in values)])
    return header, rows


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table, tasks as columns in the papers' order, AVG last."""
    header, rows = _table(metrics)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in [header, *rows]
    ]
    title = f"protocol: {metrics['protocol']}" + "".join(
        f", {k}: {v}" for k, v in metrics.get("options", {}).items() if v not in (None, "")
    )
    return "\n".join([title, *lines])


def format_markdown(metrics: dict[str, Any]) -> str:
    notes = []
    missing = sum(t.get("missing", 0) for t in metrics["tasks"].values())
    if missing:
        notes.append(f"{missing} item(s) had no prediction and count as misses.")
    unknown = sum(t.get("image_unknown", 0) for t in metrics["tasks"].values())
    if metrics["protocol"] == "mirg" and unknown:
        notes.append(f"{unknown} item(s) have no known target image: scored on the box alone.")
    head = f"Protocol: `{metrics['protocol']}`. Percentages; AVG is the unweighted mean over tasks."
    return "\n".join([head, "", md_table(*_table(metrics)), *(["", *notes] if notes else [])]) + "\n"
