"""JSON and JSONL readers that report the file and line of every problem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mirg.errors import DataError


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except IsADirectoryError:
        raise DataError("is a directory, expected a file", path=path) from None
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path) from None


def iter_jsonl_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line number, decoded JSON) for each non-blank line; DataError on bad JSON."""
    path = Path(path)
    for lineno, text in enumerate(_read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            yield lineno, json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e.msg} at column {e.colno})", path=path, line=lineno) from None


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
    if pos >= len(text) or text[pos] != "[":
        raise DataError("expected a JSON array ('[' ...)", path=path, line=line_of(pos))
    pos = skip_ws(pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        start = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e.msg} at column {e.colno})", path=path, line=e.lineno) from None
        yield line_of(start), value
        pos = skip_ws(pos)
        if pos < len(text) and text[pos] == ",":
            pos = skip_ws(pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            if skip_ws(pos + 1) != len(text):
                raise DataError("unexpected text after the JSON array", path=path, line=line_of(pos + 1))
            return
        raise DataError("expected ',' or ']' between array elements", path=path, line=line_of(pos))


def read_appendable_jsonl(path: str | Path) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """Records of a JSONL file that a resumable job appends to, repairing a torn last line.

    A write interrupted mid-line (kill -9, power loss) leaves bytes after the last newline; they are cut from
    the file (and fsynced) so the job can append cleanly, and their count is returned. Every complete line must
    be a JSON object with a string ``id``; anything else is a DataError naming the line.
    Returns ``([(line, record), ...], repaired_bytes)``.
    """
    import os

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
    for lineno, line in enumerate(data[:keep].decode("utf-8", errors="replace").split("\n"), start=1):
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
