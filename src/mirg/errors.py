"""Errors that the CLI turns into one clear line (never a traceback)."""

from __future__ import annotations

from pathlib import Path


class MirgError(Exception):
    """An error caused by the user's input or setup; the CLI prints ``mirg: error: <message>``."""


class DataError(MirgError):
    """A problem in a data file, located by file, line (1-based) and field where known."""

    def __init__(
        self, why: str, path: str | Path | None = None, line: int | None = None, field: str | None = None
    ):
        self.why = why
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        where = "" if path is None else f"{path}{'' if line is None else f':{line}'}: "
        super().__init__(where + (f"field '{field}': " if field else "") + why)


class ImageError(MirgError):
    """A missing or unreadable image; the message names the path."""


def not_found(what: str, path: str | Path, folder: bool = False) -> MirgError:
    """The error for a ``what`` (e.g. "data file") at ``path`` that is not there, or is there as the other kind
    (a folder where a file belongs, or the reverse)."""
    p = Path(path)
    if p.exists():
        return MirgError(
            f"{what} {p} is a {'file' if folder else 'folder'}, not a {'folder' if folder else 'file'}"
        )
    return MirgError(f"{what} not found: {p}")
