"""The resumable output folder: ``trajectories.jsonl`` + ``dropped.jsonl`` + ``runs.json``.

* Every accepted trajectory is appended and flushed at once (thread-safe), so a killed run loses at most the
  requests in flight. On open, a torn last line (no newline at the end: the write was cut) is cut off.
* Work is keyed by ``(sample id, run key)``; the run key is the teacher key, or ``"template"``. A rerun
  skips samples that already have their trajectories under the same key.
* Samples that failed verification K times are appended to ``dropped.jsonl`` (id, key, task, reason, the
  reason of every attempt); a rerun skips them too unless told to retry them.
* ``runs.json`` remembers each run key's configuration (what the key hashes, for people; and the template
  settings, so a template rerun with other settings into the same folder is refused instead of mixed).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from mirg.errors import DataError, MirgError
from mirg.jsonio import read_appendable_jsonl
from mirg.outputs import write_atomic

TRAJECTORIES = "trajectories.jsonl"
DROPPED = "dropped.jsonl"
RUNS = "runs.json"
STATS = "stats.json"
TEMPLATE_KEY = "template"


def run_key(record: dict[str, Any]) -> str:
    """The run key of a trajectory record."""
    return record.get("teacher_key") or TEMPLATE_KEY


def _write_json(path: Path, obj: Any, sort_keys: bool = False) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


class TrajectoryStore:
    """Append-only writer for one output folder, with what is already done."""

    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise MirgError(f"--out {self.dir} exists and is not a folder")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / TRAJECTORIES
        self.runs_path = self.dir / RUNS
        dropped_path = self.dir / DROPPED
        # a torn last line (a killed write) is cut from the file
        self.records = [rec for _, rec in read_appendable_jsonl(self.path)[0]]
        self.counts: Counter[tuple[str, str]] = Counter((r["id"], run_key(r)) for r in self.records)
        # (sample id, run key) -> its last drop record
        self.dropped: dict[tuple[str, str], dict[str, Any]] = {
            (r["id"], r.get("key") or TEMPLATE_KEY): r for _, r in read_appendable_jsonl(dropped_path)[0]
        }
        self.runs: dict[str, Any] = {}
        if self.runs_path.exists():
            try:
                self.runs = json.loads(self.runs_path.read_text(encoding="utf-8"))
            except ValueError:
                raise DataError("invalid JSON; fix or delete the file", path=self.runs_path) from None
        self._lock = threading.Lock()
        self._fh = self.path.open("a", encoding="utf-8")
        self._dfh = dropped_path.open("a", encoding="utf-8")

    # -- configuration ------------------------------------------------------------------------------------
    def register_run(self, key: str, config: dict[str, Any], strict: bool = False) -> None:
        """Remember ``config`` under ``key``. ``strict``: refuse when the key already has another config."""
        old = self.runs.get(key)
        if old is not None and old != config and strict and any(k == key for _, k in self.counts):
            changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise MirgError(
                f"{self.path} already holds {key} trajectories made with other settings "
                f"({', '.join(changed)}); use another --out or pass --overwrite"
            )
        self.runs[key] = config
        _write_json(self.runs_path, self.runs, sort_keys=True)

    def write_stats(self, stats: dict[str, Any]) -> None:
        _write_json(self.dir / STATS, stats)

    # -- what is done -------------------------------------------------------------------------------------
    def done(self, sample_id: str, key: str) -> int:
        """How many trajectories ``sample_id`` has under ``key``."""
        with self._lock:
            return self.counts[(sample_id, key)]

    def is_dropped(self, sample_id: str, key: str) -> bool:
        with self._lock:
            return (sample_id, key) in self.dropped

    # -- writing ------------------------------------------------------------------------------------------
    def _append(self, fh: Any, record: dict[str, Any]) -> None:
        """One line, flushed at once; the caller holds the lock."""
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._append(self._fh, record)
            self.records.append(record)
            self.counts[(record["id"], run_key(record))] += 1

    def add_dropped(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._append(self._dfh, record)
            self.dropped[(record["id"], record.get("key") or TEMPLATE_KEY)] = record

    def close(self) -> None:
        with self._lock:
            self._fh.close()
            self._dfh.close()

    def __enter__(self) -> TrajectoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
