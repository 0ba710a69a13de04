"""Per-step metrics to ``<output_dir>/metrics.jsonl``: one JSON object per logging step, as TRL logs them
(SFT: ``loss``, ``mean_token_accuracy``, ...; GRPO: ``reward``, ``rewards/format_reward/mean``,
``rewards/image_reward/mean``, ``rewards/object_reward/mean``, ``kl``, ...), plus ``step`` and ``stage``.

Only the main process writes. A fresh run starts the file anew; a resumed run first drops what the file holds
beyond its checkpoint (the steps after it and the end-of-run summary, a torn last line included), then appends:
the file reads like one run.

:func:`read_metrics` leaves out an unfinished last line (what a killed run leaves) with a warning; any other line
that is not a JSON object with an integer ``step`` is a MirgError naming ``file:line``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from mirg.errors import MirgError
from mirg.jsonio import iter_jsonl_records

METRICS_FILE = "metrics.jsonl"
SUMMARY_KEY = "train_runtime"  # in the record Trainer logs once at the end of a run


class JsonlMetricsCallback(TrainerCallback):
    """Write each ``on_log`` dict (numbers only) with the global step to a JSONL file."""

    def __init__(self, output_dir: str | Path, stage: str, resume: bool = False):
        self.path = Path(output_dir) / METRICS_FILE
        self.stage = stage
        self.resume = resume

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any):
        if not state.is_world_process_zero or not self.path.is_file():
            return
        if not self.resume:
            self.path.unlink()
            return
        # resumed: state.global_step is the checkpoint's step
        kept = [
            r
            for r in read_metrics(self.path.parent)
            if r["step"] <= state.global_step and SUMMARY_KEY not in r
        ]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, self.path)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
        if not logs or not state.is_world_process_zero:
            return
        record = {"stage": self.stage, "step": state.global_step}
        for k, v in logs.items():
            if isinstance(v, int | float):
                record[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``<output_dir>/metrics.jsonl`` (empty when absent). An unfinished last line (a killed run) is
    left out with a warning (:func:`mirg.jsonio.iter_jsonl_records`); any other bad line is a MirgError naming
    ``file:line``."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line, rec in iter_jsonl_records(path, torn_tail=True):
        if not isinstance(rec, dict) or type(rec.get("step")) is not int:
            raise MirgError(f"{path}:{line}: not a metrics record (a JSON object with an integer step)")
        records.append(rec)
    return records
