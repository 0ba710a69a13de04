"""Per-step metrics to ``<output_dir>/metrics.jsonl``: one JSON object per logging step, as TRL logs them
(SFT: ``loss``, ``mean_token_accuracy``, ...; GRPO: ``reward``, ``rewards/format_reward/mean``,
``rewards/image_reward/mean``, ``rewards/object_reward/mean``, ``kl``, ...), plus ``step`` and ``stage``.

Written by :class:`mirg.training.progress.TrainingLog` (main process; a resumed run continues the file as one run);
read by :func:`read_metrics`. This module imports no transformers, so that ``mirg report`` need not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mirg.errors import MirgError
from mirg.jsonio import iter_jsonl_records

METRICS_FILE = "metrics.jsonl"
SUMMARY_KEY = "train_runtime"  # in the record Trainer logs once at the end of a run


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
