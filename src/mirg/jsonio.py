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
