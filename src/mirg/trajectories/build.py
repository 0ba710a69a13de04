"""The frame of a ``mirg trajectories`` run: read the data, set up the student's coordinates, lock and check
the output folder, run, write ``stats.json``. The CLI and the demo call :func:`write_template_trajectories`;
see docs/trajectories.md for the outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mirg.answers import Dialect
from mirg.errors import MirgError, not_found
from mirg.trajectories.records import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Resizer


def load_usable(
    data: str | Path, fmt: str = "auto", image_root: str | Path | None = None, limit: int | None = None
) -> tuple[list, Path, dict, list[Path]]:
    """(samples cut to the first ``limit``, image root, skipped-turn counts, every image of the file) of a Sample
    JSONL or MGrounding file; raises when no sample is left or an image is missing."""
    from mirg.images import check_images_exist, resolve
    from mirg.sample import read_samples
    from mirg.trajectories.mgrounding import is_mgrounding, load_mgrounding

    path = Path(data)
    if not path.is_file():
        raise not_found("data file", path)
    skipped: dict[str, int] = {}
    if fmt == "mgrounding" or (fmt == "auto" and is_mgrounding(path)):
        samples, counts = load_mgrounding(path)
        skipped = dict(counts)
    else:
        samples = read_samples(path)
    root = Path(image_root) if image_root else path.parent
    images = [resolve(p, root) for p in dict.fromkeys(p for s in samples for p in s.images)]
    if limit:
        samples = samples[:limit]
    if not samples:
        raise MirgError(f"no usable samples in {data}")
    check_images_exist([p for s in samples for p in s.images], root)
    return samples, root, skipped, images


def student(
    model: str | Path | None = None,
    dialect: str | None = None,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[Dialect, Resizer]:
    """The student's answer dialect and image resizer: from the checkpoint folder ``model`` (only its processor
    is read; its family is the default dialect), else from ``min_pixels``/``max_pixels``."""
    from mirg.answers import get_dialect

    processor = None
    if model:
        from mirg.models.loading import family_of, load_processor

        processor = load_processor(model)
        dialect = dialect or family_of(model)
    return get_dialect(dialect or "qwen2_5_vl"), Resizer(processor, min_pixels, max_pixels)


def open_output(
    out: str | Path, data: str | Path, images: list[Path], dialect: Any, resizer: Any, overwrite: bool
) -> Any:
    """Lock the trajectory folder ``out`` for the run and check its manifest: a rerun resumes only on the same
    data (content hash), images (:func:`mirg.outputs.files_fingerprint`), student dialect and image sizing; the template or
    teacher settings themselves are checked per run key by the store (``runs.json``)."""
    from mirg.outputs import file_fingerprint, files_fingerprint, open_run
    from mirg.trajectories.store import DROPPED, RUNS, STATS, TRAJECTORIES

    settings = {
        "data": file_fingerprint(data),
        "images": files_fingerprint(images, out),
        "dialect": dialect.name,
        **resizer.settings(),
    }
    names = [TRAJECTORIES, DROPPED, RUNS, STATS]
    return open_run(
        out, "trajectories", settings, outputs=names, overwrite=overwrite, inputs={"--data": data}
    )


def build(
    data: str | Path,
    out: str | Path,
    run: Callable[..., tuple[Any, dict[str, Any]]],
    model: str | Path | None,
    dialect: str | None,
    min_pixels: int,
    max_pixels: int,
    data_format: str,
    image_root: str | Path | None,
    limit: int | None,
    overwrite: bool,
) -> dict[str, Any]:
    """One run into the folder ``out``: ``run(samples, root, store, dialect, resizer)`` writes the
    trajectories and returns its :class:`~mirg.trajectories.runner.RunReport` and the fields naming the run in
    the stats (mode, dialect, teacher key, ...). Returns the folder's stats, as written to ``stats.json``."""
    from mirg.trajectories.runner import compute_stats
    from mirg.trajectories.store import TrajectoryStore

    start = time.perf_counter()
    samples, root, skipped, images = load_usable(data, data_format, image_root, limit)
    student_dialect, resizer = student(model, dialect, min_pixels, max_pixels)
    with (
        open_output(out, data, images, student_dialect, resizer, overwrite),
        TrajectoryStore(out) as store,
    ):
        rep, extra = run(samples, root, store, student_dialect, resizer)
        extra["data"] = str(data)
        if skipped:
            extra["skipped_in_data"] = skipped
        extra["run"] = rep.summary(time.perf_counter() - start)
        stats = compute_stats(samples, store, rep.key, extra)
        store.write_stats(stats)
    return stats


def write_template_trajectories(
    data: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    *,
    seed: int = 0,
    reasoning: str = "full",
    per_sample: int = 1,
    dialect: str | None = None,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    data_format: str = "auto",
    image_root: str | Path | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Template trajectories of the samples in ``data`` into the folder ``out`` (``trajectories.jsonl``,
    ``dropped.jsonl``, ``runs.json``, ``stats.json``); ``mirg trajectories --mode template`` is this function.

    ``model``: the student checkpoint folder (its processor gives the resized image sizes the answer's pixels
    refer to). ``reasoning``: ``"full"`` (the four steps), ``"short"`` (cross-image step and localisation),
    ``"brief"`` (localisation only) or ``"compact"`` (two short sentences of their own), see
    :data:`mirg.trajectories.template.REASONING_LENGTHS`. A rerun into the same folder resumes; with other
    settings, data or images it is refused unless ``overwrite``.

    Returns the folder's stats (as in ``stats.json``), among them ``trajectories`` (how many the folder holds
    for these samples), ``kept_samples``, ``dropped_samples`` and ``mean_reasoning_words``.
    """
    from mirg.trajectories.runner import run_template
    from mirg.trajectories.template import REASONING_LENGTHS

    if reasoning not in REASONING_LENGTHS:
        raise MirgError(f"reasoning must be one of {', '.join(REASONING_LENGTHS)}, got {reasoning!r}")
    if per_sample < 1:
        raise MirgError(f"per_sample must be >= 1, got {per_sample}")

    def run(samples: list, root: Path, store: Any, d: Dialect, resizer: Resizer) -> tuple[Any, dict]:
        rep = run_template(samples, root, store, d, resizer, seed, per_sample, progress, reasoning)
        return rep, {"mode": "template", "dialect": d.name, "teacher_key": None, "reasoning": reasoning}

    return build(
        data, out, run, model, dialect, min_pixels, max_pixels, data_format, image_root, limit, overwrite
    )
