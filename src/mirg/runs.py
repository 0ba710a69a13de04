"""``mirg eval`` folders as data for ``mirg report`` and ``mirg compare``: the samples, the predictions and each
item scored by :func:`mirg.scoring.score_items` (the one scorer: a hit here is what ``metrics.json`` counts).

A folder holds ``predictions.jsonl`` and, once finished, ``metrics.json`` whose ``run.data`` names the data it
was evaluated on; ``--data`` overrides that, and a ``mirg demo`` stage folder (``DIR/eval/<stage>``) finds
``DIR/data/test/samples.jsonl``. Only samples with a prediction count (an interrupted run is scored on what it
answered). Image paths are relative to the data file's folder unless ``image_root`` is given (MIG-Bench).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirg.answers import DIALECTS
from mirg.errors import MirgError
from mirg.migbench import load_samples
from mirg.outputs import MANIFEST, file_fingerprint
from mirg.predictions import read_predictions_jsonl
from mirg.sample import Sample
from mirg.scoring import ItemScore, Prediction, aggregate, score_items

MEASURES = {"acc": "Acc@0.5 (right image and IoU >= 0.5)", "image": "image accuracy (names the target image)"}


@dataclass
class EvalRun:
    label: str
    folder: Path
    data: Path
    root: Path  # the folder image paths are relative to
    samples: list[Sample]  # the answered ones, in data order
    preds: dict[str, Prediction]
    items: list[ItemScore]  # one per sample, same order
    info: dict[str, Any] = field(default_factory=dict)  # metrics.json's "run" block ({} before it is written)
    unanswered: int = 0  # data samples without a prediction

    def hits(self, measure: str = "acc") -> dict[str, bool]:
        """Sample id -> counted: ``acc`` right image and IoU >= 0.5 (Acc@0.5), ``image`` names the target image
        (samples without a known target image are left out, as image accuracy leaves them out)."""
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}, not {measure!r}")
        if measure == "acc":
            return {it.id: it.iou >= 0.5 for it in self.items}
        return {it.id: bool(it.image_correct) for it in self.items if it.image_correct is not None}

    def metrics(self) -> dict[str, Any]:
        return aggregate(self.items, "mirg")

    def named_images(self) -> dict[str, int]:
        """How many answers name each image ("none": no image parsed)."""
        counts = Counter(str(it.pred_image) if it.pred_image is not None else "none" for it in self.items)
        return dict(sorted(counts.items()))


def _find_data(folder: Path, info: dict[str, Any], data: str | Path | None) -> Path:
    if data is not None:
        if not Path(data).is_file():
            raise MirgError(f"--data: file not found: {data}")
        return Path(data)
    named = info.get("data")
    candidates = [folder / named, Path(named)] if named else []  # relative to the folder (older: to its cwd)
    candidates.append(folder.parent.parent / "data" / "test" / "samples.jsonl")  # a mirg demo stage folder
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        why = f"metrics.json names {named!r}, not found" if named else "no metrics.json names it"
        raise MirgError(f"{folder}: cannot find the data it was evaluated on ({why}); pass --data")
    return found


def _check_same_data(folder: Path, data: Path) -> None:
    """MirgError when ``data`` is not the content the folder's eval ran on (its ``mirg-run.json`` fingerprint):
    old predictions scored against changed boxes would give wrong figures without a word."""
    try:
        made_on = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["settings"]["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no manifest (an older mirg, or predictions from elsewhere): nothing to compare
    if made_on != file_fingerprint(data):
        raise MirgError(
            f"{folder}: its predictions were made on other data than {data} (the file changed since, or another "
            "one was given); rerun mirg eval on it, or pass the data it ran on with --data"
        )


def load_run(
    folder: str | Path,
    label: str | None = None,
    data: str | Path | None = None,
    image_root: str | Path | None = None,
) -> EvalRun:
    """Load and score one eval folder; MirgError (one line) when it is not one or its data cannot be found."""
    folder = Path(folder)
    if folder.is_file():
        raise MirgError(f"{folder} is a file: give the mirg eval folder that holds it ({folder.parent})")
    if not folder.is_dir():
        raise MirgError(f"run folder not found: {folder}")
    pred_path = folder / "predictions.jsonl"
    if not pred_path.is_file():
        hint = ": a mirg demo folder? pass its eval/<stage> folders" if (folder / "eval").is_dir() else ""
        raise MirgError(f"{folder}: no predictions.jsonl, not a mirg eval folder{hint}")
    if not pred_path.read_text(encoding="utf-8").strip():
        raise MirgError(f"{pred_path}: no predictions")
    metrics_path = folder / "metrics.json"
    info: dict[str, Any] = {}
    if metrics_path.is_file():
        try:
            info = json.loads(metrics_path.read_text(encoding="utf-8")).get("run", {})
        except (json.JSONDecodeError, AttributeError):
            raise MirgError(f"{metrics_path}: not a metrics JSON object") from None
    data_path = _find_data(folder, info, data)
    _check_same_data(folder, data_path)
    all_samples = load_samples(data_path)
    preds = {p.id: p for p in read_predictions_jsonl(pred_path, all_samples)}
    samples = [s for s in all_samples if s.id in preds]
    dialect = DIALECTS.get(str(info.get("family")))  # only for records without parsed fields
    items = score_items(samples, preds.values(), "mirg", dialect=dialect, missing="skip")
    return EvalRun(
        label or folder.name, folder, data_path, Path(image_root) if image_root else data_path.parent,
        samples, preds, items, info, len(all_samples) - len(samples),
    )  # fmt: skip


def load_runs(
    folders: list[str | Path], data: str | Path | None = None, image_root: str | Path | None = None
) -> list[EvalRun]:
    """Several runs, each labelled by the shortest end of its path that tells it from the others."""
    paths = [Path(f).resolve() for f in folders]
    labels = [p.name for p in paths]
    for k in range(2, max(len(p.parts) for p in paths) + 1):
        if len(set(labels)) == len(labels):
            break
        labels = [
            "/".join(p.parts[-k:]) if labels.count(lab) > 1 else lab
            for p, lab in zip(paths, labels, strict=True)
        ]
    labels = [lab if labels.count(lab) == 1 else f"{lab} ({k + 1})" for k, lab in enumerate(labels)]
    return [load_run(f, lab, data, image_root) for f, lab in zip(folders, labels, strict=True)]
