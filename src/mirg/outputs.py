"""Output folders and files of resumable jobs: a run manifest, an exclusive lock, and output-path checks.

* :func:`open_run` — the context manager a resumable job wraps its work in. It takes an exclusive
  ``fcntl.flock`` on ``OUT/.mirg.lock`` for the run's lifetime (a second run into the same folder gets one
  line naming the holder's pid, host and start time), then compares ``OUT/mirg-run.json`` with this run's
  settings: it resumes only when every fingerprint matches; otherwise one line names what differs and the two
  ways out (a new ``--out`` or ``--overwrite``). ``overwrite`` deletes the listed outputs first.
* Fingerprints: :func:`file_fingerprint` (sha256 of the content), :func:`model_fingerprint` (every file at
  the top of a checkpoint folder: files up to 64 MiB hashed whole; bigger ones by name, size and their first
  and last MiB, so a 15 GB checkpoint costs milliseconds), :func:`files_fingerprint` (paths relative to the output
  folder, and sizes).
* :func:`check_output_file` — an output file checked before the work starts: not a folder, not an input,
  an allowed extension; its folder is created.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mirg.errors import MirgError

MANIFEST = "mirg-run.json"
RUN_FILES = (MANIFEST, "predictions.jsonl", "metrics.json")  # what readers of a run folder read
LOCK = ".mirg.lock"
WHOLE_FILE_LIMIT = 64 * 2**20  # bigger weight files are fingerprinted by name, size, first and last MiB
CHUNK = 2**20


def _sha(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()[:16]


def _file_chunks(path: Path, whole: bool = True) -> Iterator[bytes]:
    size = path.stat().st_size
    with path.open("rb") as fh:
        if whole or size <= WHOLE_FILE_LIMIT:
            while block := fh.read(CHUNK):
                yield block
        else:
            yield f"{path.name}:{size}".encode()
            yield fh.read(CHUNK)
            fh.seek(size - CHUNK)
            yield fh.read(CHUNK)


def file_fingerprint(path: str | Path) -> str:
    """Hash of a file's content (16 hex digits)."""
    return _sha(_file_chunks(Path(path)))


def model_fingerprint(path: str | Path) -> str:
    """Hash of a checkpoint folder: config, tokenizer and processor files whole; weight files whole up to
    64 MiB, bigger ones by name, size and first/last MiB. Subfolders and hidden files are not read."""
    folder = Path(path)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))

    def parts() -> Iterator[bytes]:
        for p in files:
            yield p.name.encode() + b"\0"
            yield from _file_chunks(p, whole=False)

    return _sha(parts())


def relative_path(path: str | Path, folder: str | Path) -> str:
    """``path`` relative to ``folder`` (POSIX form; absolute when no relative path exists, another drive)."""
    full = os.path.abspath(path)
    try:
        return Path(os.path.relpath(full, os.path.abspath(folder))).as_posix()
    except ValueError:
        return full


def files_fingerprint(paths: Iterable[str | Path], out: str | Path) -> str:
    """Hash of files' paths relative to the output folder ``out`` and their sizes (-1: missing); cheap, for the
    images a data file refers to. Other images (another image root, re-rendered files) differ; the same run
    resumed from another working directory, or with data and outputs moved together, does not."""
    return _sha(f"{relative_path(p, out)}\0{Path(p).stat().st_size if Path(p).is_file() else -1}\n".encode()
                for p in paths)  # fmt: skip


# --- output paths --------------------------------------------------------------------------------------------


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_out_dir(out: str | Path, flag: str = "--out", inputs: Mapping[str, Any] | None = None) -> Path:
    """An output folder: not an existing file, not an input; created."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MirgError(f"{flag} {out} is an existing file; {flag} names a folder")
    for name, path in (inputs or {}).items():
        if path is not None and _same(out, Path(path)):
            raise MirgError(f"{flag} {out} is the same path as {name}; choose another {flag}")
    _make_writable(out, flag, out, "the folder")
    return out


def _make_writable(folder: Path, flag: str, given: Path, what: str) -> None:
    """Create ``folder`` (``what`` in the error) and check a file can be created in it (tried, not inferred from
    permission bits: root passes every permission check and still cannot write into /proc); MirgError if not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MirgError(f"{flag} {given}: cannot create {what} ({e.strerror})") from None
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise MirgError(f"{flag} {given}: cannot write into {folder} ({e.strerror})") from None


def check_output_file(
    path: str | Path,
    flag: str,
    inputs: Mapping[str, Any] | None = None,
    suffixes: Iterable[str] | None = None,
) -> Path:
    """Check an output file before any work: not a folder, not one of ``inputs`` ({flag: path}), one of
    ``suffixes`` when given; its parent folder is created. MirgError (one line) otherwise."""
    path = Path(path)
    if path.is_dir():
        raise MirgError(f"{flag} {path} is a folder; {flag} names a file")
    if suffixes is not None:
        allowed = list(dict.fromkeys(s.lower() for s in suffixes))
        if path.suffix.lower() not in allowed:
            shown = ", ".join(allowed[:8]) + (", ..." if len(allowed) > 8 else "")
            raise MirgError(f"{flag} {path}: unsupported extension {path.suffix!r}; use one of {shown}")
    for name, value in (inputs or {}).items():
        values = [Path(v) for v in (value if isinstance(value, list | tuple) else [value]) if v is not None]
        # an input folder (an eval run) is read through its run files: those are inputs too
        values += [v / f for v in values if v.is_dir() for f in RUN_FILES]
        if any(_same(path, v) for v in values):
            raise MirgError(f"{flag} {path} is also {name}: writing it would overwrite the input")
    if path.parent.exists() and not path.parent.is_dir():
        raise MirgError(f"{flag} {path}: {path.parent} is a file, not a folder")
    _make_writable(path.parent, flag, path, "its folder")
    return path


# --- the lock ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def locked(out: str | Path, flag: str = "--out") -> Iterator[None]:
    """Hold an exclusive lock on folder ``out`` (``OUT/.mirg.lock``) for the block; MirgError naming the holder
    when another run holds it. The lock dies with the process (kill -9 included): no stale locks."""
    import fcntl

    path = Path(out) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise MirgError(f"{out}: cannot create the lock file {LOCK} ({e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = "another process"
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
                holder = f"pid {info['pid']} on {info['host']}, started {info['started']}"
            raise MirgError(
                f"{out} is in use by another mirg run ({holder}); wait for it to finish or use another {flag}"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _nonempty(path: Path) -> bool:
    """An output that holds something (a folder, or a file of at least one byte)."""
    return path.exists() and not (path.is_file() and path.stat().st_size == 0)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


# --- the manifest --------------------------------------------------------------------------------------------


def check_manifest(
    out: Path,
    job: str,
    settings: dict[str, Any],
    outputs: Iterable[str],
    overwrite: bool,
    flag: str = "--out",
    way_out: str | None = None,
) -> bool:
    """Compare (or start) ``OUT/mirg-run.json``; True when earlier outputs are resumed. Caller holds the lock.
    A folder of another job (another verb) is never taken over, ``overwrite`` or not; an empty output file (what a
    run that failed before its first result leaves) counts as absent. ``flag`` names the output folder's option
    and ``way_out`` what to do instead, in the error lines."""
    manifest = out / MANIFEST
    outputs = list(outputs)
    way_out = way_out or f"use a new {flag}, or pass --overwrite to start this folder afresh"
    old: dict[str, Any] | None = None
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text(encoding="utf-8"))
            old = {"job": old["job"], "settings": dict(old["settings"])}
        except (ValueError, KeyError, TypeError):
            old = None
            if not overwrite and any(_nonempty(out / name) for name in outputs):
                raise MirgError(f"{manifest} is unreadable; {way_out}") from None
    if old is not None and old["job"] != job:
        raise MirgError(f"{out} holds a mirg {old['job']} run, not {job}; use a new {flag}")
    if overwrite:
        for name in outputs:
            (out / name).unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
        old = None
    present = [name for name in outputs if _nonempty(out / name)]
    if old is not None and present:
        differ = sorted(
            k for k in set(old["settings"]) | set(settings) if old["settings"].get(k) != settings.get(k)
        )
        if differ:
            raise MirgError(
                f"{out} holds outputs of another {job} run (different {', '.join(differ)}); resuming would mix "
                f"them: {way_out}"
            )
        return True
    if present:
        raise MirgError(
            f"{out} holds {', '.join(present)} but no {MANIFEST} saying what made them (an older mirg?); {way_out}"
        )
    record = {"job": job, "settings": settings, "created": _now()}
    write_atomic(manifest, json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return False


def write_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, then renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def open_run(
    out: str | Path,
    job: str,
    settings: dict[str, Any],
    *,
    outputs: Iterable[str],
    overwrite: bool = False,
    inputs: Mapping[str, Any] | None = None,
    flag: str = "--out",
    way_out: str | None = None,
) -> Iterator[bool]:
    """Lock ``out`` and check its manifest for the block; yields True when resuming earlier outputs. ``flag`` and
    ``way_out``: the output option's name and the advice in error lines (see :func:`check_manifest`).

    ``settings``: JSON values (fingerprints and every option that changes outputs). ``outputs``: the file
    names inside ``out`` the job writes (deleted by ``overwrite``). ``inputs``: {flag: path} that ``out`` must
    not be.
    """
    folder = check_out_dir(out, flag, inputs=inputs)
    with locked(folder, flag):
        yield check_manifest(folder, job, settings, list(outputs), overwrite, flag, way_out)
