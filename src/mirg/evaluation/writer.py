"""The resumable predictions file: append-only JSONL, flushed and fsynced per batch.

On open, every complete line is read (ids already done are skipped by the runner) and a torn last line —
one without its newline, as a kill -9 mid-write leaves it — is cut off, so that sample is redone. Ids are
never written twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mirg.errors import DataError
from mirg.jsonio import read_appendable_jsonl

KEYS = ("id", "task", "raw_output", "pred_image", "pred_box", "parse_error", "seconds")


class PredictionsWriter:
    """Append predictions to ``path``; ``done`` maps id -> record for every complete line already there."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict[str, Any]] = {}
        records, self.repaired_bytes = read_appendable_jsonl(self.path)
        for lineno, rec in records:
            if rec["id"] in self.done:
                raise DataError(f"duplicate prediction for id {rec['id']!r}", path=self.path, line=lineno)
            self.done[rec["id"]] = rec
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records (one batch) in a single write, then flush and fsync."""
        lines = []
        for rec in records:
            if rec["id"] in self.done:
                raise ValueError(f"prediction for {rec['id']!r} is already written")
            self.done[rec["id"]] = rec
            lines.append(
                json.dumps({k: rec.get(k) for k in KEYS}, ensure_ascii=False, allow_nan=False) + "\n"
            )
        if not lines:
            return
        self._fh.write("".join(lines))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> PredictionsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
