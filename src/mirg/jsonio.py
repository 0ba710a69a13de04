"""JSON and JSONL readers that report the file and line of every problem (a UTF-8 BOM is accepted), and
:func:`sniff`, which tells what a data file holds from its content (never its extension)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mirg.errors import DataError


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except IsADirectoryError:
        raise DataError("is a directory, expected a file", path=path) from None
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path, line=line) from None


def iter_jsonl_records(path: str | Path, torn_tail: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line number, decoded JSON) for each non-blank line; DataError on bad JSON. With
    ``torn_tail`` an unfinished last line (no newline after it: what a killed writer leaves) is left out with a
    warning instead."""
    path = Path(path)
    # split on "\n" only: str.splitlines() would also cut at U+0085, U+2028, ... inside a JSON string
    lines = _read_text(path).split("\n")
    for lineno, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            yield lineno, json.loads(text)
        except json.JSONDecodeError as e:
            if torn_tail and lineno == len(lines):
                print(f"mirg: warning: {path}:{lineno}: unfinished last line (an interrupted run?) left out",
                      file=sys.stderr)  # fmt: skip
                return
            raise DataError(_invalid(e), path=path, line=lineno) from None


def _invalid(e: json.JSONDecodeError) -> str:
    return f"invalid JSON at column {e.colno}: {e.msg}"


def iter_json_array(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line where the element starts, element) for a file holding one JSON array."""
    path = Path(path)
    text = _read_text(path)
    decoder = json.JSONDecoder()

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def skip_ws(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos = skip_ws(0)
    if not text.startswith("[", pos):
        raise DataError("expected a JSON array ('[' ...)", path=path, line=line_of(pos))
    pos = skip_ws(pos + 1)
    if text.startswith("]", pos):
        return
    while True:
        start = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(_invalid(e), path=path, line=e.lineno) from None
        yield line_of(start), value
        pos = skip_ws(pos)
        if text.startswith(",", pos):
            pos = skip_ws(pos + 1)
        elif not text.startswith("]", pos):
            raise DataError("expected ',' or ']' between array elements", path=path, line=line_of(pos))
        elif skip_ws(pos + 1) != len(text):
            raise DataError("unexpected text after the JSON array", path=path, line=line_of(pos + 1))
        else:
            return


def read_appendable_jsonl(path: str | Path) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """Records of a JSONL file that a resumable job appends to, repairing a torn last line.

    A write interrupted mid-line (kill -9, power loss) leaves bytes after the last newline; they are cut from
    the file (and fsynced) so the job can append cleanly, and their count is returned. Every complete line must
    be a JSON object with a string ``id``; anything else is a DataError naming the line.
    Returns ``([(line, record), ...], repaired_bytes)``.
    """
    path = Path(path)
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    repaired = len(data) - keep
    if repaired:
        with path.open("r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    out = []
    for lineno, line in enumerate(data[:keep].decode("utf-8-sig", errors="replace").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"corrupt line ({e.msg}); delete this line or the file to continue", path=path, line=lineno
            ) from None
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
            raise DataError("expected an object with a string 'id'", path=path, line=lineno)
        out.append((lineno, rec))
    return out, repaired


# --- what a file holds ---------------------------------------------------------------------------------------

# kind -> (what it is, where it belongs)
KINDS: dict[str, tuple[str, str]] = {
    "migbench": ("a MIG-Bench file", "use it with mirg eval --data or mirg score --bench (mirg synth makes Sample "
                 "data for mirg trajectories)"),
    "samples": ("a Sample file", "use it with mirg eval, mirg score --bench or mirg rl; run `mirg trajectories` "
                "first to make SFT data"),
    "predictions": ("a predictions file", "score it with mirg score --predictions"),
    "results": ("a third-party MIG-Bench results file", "score it with mirg score --predictions"),
    "trajectories": ("a trajectories file", "train on it with mirg sft"),
    "mgrounding": ("MGrounding data", "mirg trajectories reads it"),
    "object": ("one JSON object, not a list of records", "MIG-Bench is a JSON array; mirg data is JSONL, one "
               "record per line"),
}  # fmt: skip
SNIFF_BYTES = 1 << 20


def _kind_of(record: Any) -> str:
    if not isinstance(record, dict):
        return "unknown"
    keys = set(record)
    for kind, needs in (
        ("trajectories", {"messages"}),
        ("mgrounding", {"conversations"}),
        ("predictions", {"raw_output"}),
        ("results", {"groundtruth", "answer"}),
        ("migbench", {"task", "images", "question", "answer"}),
        ("samples", {"id", "task", "images", "question"}),
    ):
        if needs <= keys:
            return kind
    return "unknown"


def sniff(path: str | Path) -> str:
    """What ``path`` holds, from its first record: a key of :data:`KINDS`, or ``"unknown"`` (a JSON array or
    JSONL of unrecognised records, not JSON, unreadable or empty: the reader then names the problem)."""
    try:
        with Path(path).open("r", encoding="utf-8-sig", errors="replace") as fh:
            text = fh.read(SNIFF_BYTES).lstrip()
    except OSError:
        return "unknown"
    decoder = json.JSONDecoder()
    try:
        if text.startswith("["):
            first = decoder.raw_decode(text, len(text) - len(text[1:].lstrip()))[0]
            return _kind_of(first)
        if text.startswith("{"):
            try:
                return _kind_of(json.loads(text.split("\n", 1)[0]))
            except ValueError:
                value, end = decoder.raw_decode(text)
                return "object" if isinstance(value, dict) and not text[end:].strip() else "unknown"
    except ValueError:
        pass
    return "unknown"


def require_kind(path: str | Path, wanted: tuple[str, ...], kind: str | None = None) -> str:
    """The file's kind (:func:`sniff`); DataError with a hint toward the right verb when it is another known
    kind than ``wanted``."""
    kind = kind or sniff(path)
    if kind in KINDS and kind not in wanted:
        what, where = KINDS[kind]
        raise DataError(f"this is {what}: {where}", path=path)
    return kind
