"""Per-step metrics to ``<output_dir>/metrics.jsonl``: one JSON object per logging step, as TRL logs them
(SFT: ``loss``, ``mean_token_accuracy``, ...; GRPO: ``reward``, ``rewards/format_reward/mean``,
``rewards/image_reward/mean``, ``rewards/object_reward/mean``, ``kl``, ...), plus ``step`` and ``stage``.

Only the main process writes. A fresh run starts the file anew; a resumed run appends to it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

METRICS_FILE = "metrics.jsonl"


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class JsonlMetricsCallback(TrainerCallback):
    """Write each ``on_log`` dict (numbers only) with the global step to a JSONL file."""

    def __init__(self, output_dir: str | Path, stage: str, resume: bool = False):
        self.path = Path(output_dir) / METRICS_FILE
        self.stage = stage
        self.resume = resume

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any):
        if not self.resume and state.is_world_process_zero and self.path.is_file():
            self.path.unlink()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
        if not logs or not state.is_world_process_zero:
            return
        record = {"stage": self.stage, "step": state.global_step}
        record.update({k: _clean(v) for k, v in logs.items() if isinstance(v, int | float)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``<output_dir>/metrics.jsonl`` (empty when absent)."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
