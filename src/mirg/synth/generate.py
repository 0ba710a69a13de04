"""MIG-Synth generation: seeding, retries, conversion to :class:`~mirg.sample.Sample` records, and writing.

Determinism: sample ``index`` of ``task`` under ``seed`` draws every random choice from
``numpy.random.default_rng(SeedSequence([seed, crc32(task), index]))`` and nothing else, so it is the same
whatever other tasks or counts are generated alongside, and PNG bytes are stable (fixed encoder options).
Different seeds give independent streams; ``meta.scene`` hashes the pixels (with the seed) to check that
splits made from different seeds share no scene.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mirg.errors import MirgError
from mirg.sample import ObjectAnn, RefBox, Sample, write_samples
from mirg.synth.render import Mask, normalize_box
from mirg.synth.scene import Built, Ctx, Reject, SynthConfig
from mirg.synth.tasks import BUILDERS, SYNTH_TASKS, TASK_IMAGES

GENERATOR = "mig-synth/1"
SOURCE = "mig-synth"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_ZLIB_LEVEL = 1


@dataclass
class Generated:
    """One generated sample: the record (image paths relative to the output folder), the pixels of each image
    ((S, S, 3) uint8), and each annotated object's exact visible mask (same order as ``sample.objects``)."""

    sample: Sample
    images: list[np.ndarray]
    masks: list[list[Mask]]


def sample_rng(seed: int, task: str, index: int) -> np.random.Generator:
    """The random stream of one sample (seed >= 0, task key, index >= 0)."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(task.encode()), index]))


def images_range(task: str, config: SynthConfig) -> tuple[int, int]:
    """(min, max) images per sample for ``task``: the config's range clamped to what the task allows, or the
    task's default when the config leaves it open."""
    (a_lo, a_hi), default = TASK_IMAGES[task]
    if config.images is None:
        return default
    lo, hi = (min(max(n, a_lo), a_hi) for n in config.images)
    return lo, hi


def check_tasks(tasks: Iterable[str] | None) -> list[str]:
    """Validate task keys (None = all, in the canonical order); MirgError names unknown ones."""
    if tasks is None:
        return list(SYNTH_TASKS)
    tasks = list(dict.fromkeys(tasks))
    unknown = [t for t in tasks if t not in BUILDERS]
    if unknown or not tasks:
        raise MirgError(
            f"unknown task(s): {', '.join(unknown) or '(none given)'}; known: {', '.join(SYNTH_TASKS)}"
        )
    return tasks


def generate_sample(task: str, index: int, seed: int = 0, config: SynthConfig | None = None) -> Generated:
    """Build sample ``index`` of ``task`` (deterministic in seed, task, index and config).

    Raises MirgError when no valid scene is found in ``config.max_tries`` attempts (settings too crowded).
    """
    config = config or SynthConfig()
    if task not in BUILDERS:
        raise MirgError(f"unknown task {task!r}; known: {', '.join(SYNTH_TASKS)}")
    rng = sample_rng(seed, task, index)
    lo, hi = images_range(task, config)
    why = ""
    for attempt in range(1, config.max_tries + 1):
        ctx = Ctx(rng, config, int(rng.integers(lo, hi + 1)))
        try:
            built = BUILDERS[task](ctx)
            _check_target_clear(built)
            return _to_generated(task, index, seed, config, built, attempt)
        except Reject as e:
            why = str(e)
    raise MirgError(
        f"could not build a valid {task} scene in {config.max_tries} tries (last problem: {why}); "
        f"the images are too crowded: lower --distractors or --object-size, or raise --image-size"
    )


def _check_target_clear(b: Built) -> None:
    """No other object's pixels may fall inside the target box (in the target image)."""
    if b.target_object is None:
        return
    f = b.frames[b.target_image - 1]
    x1, y1, x2, y2 = f.boxes[b.target_object]
    for k, m in enumerate(f.masks):
        sub = m.patch[max(0, y1 - m.y0) : max(0, y2 - m.y0), max(0, x1 - m.x0) : max(0, x2 - m.x0)]
        if k != b.target_object and sub.any():
            raise Reject("a distractor lies inside the target box")


def _to_generated(task: str, index: int, seed: int, config: SynthConfig, b: Built, tries: int) -> Generated:
    S = config.image_size
    sid = f"{task}-s{seed}-{index:05d}"
    images = [f"images/{task}/{sid}-{k + 1}.png" for k in range(len(b.frames))]
    objects = []
    for f in b.frames:
        anns = []
        for o, box, extra in zip(f.objs, f.boxes, f.extra, strict=True):
            attrs = {"color": o.color, "size": o.size, "instance": o.instance, **extra}
            anns.append(ObjectAnn(o.shape, normalize_box(box, S, S), attrs))
        objects.append(anns)
    target_px = b.target_box_px or b.frames[b.target_image - 1].boxes[b.target_object]  # type: ignore[index]
    h = hashlib.sha1(f"{GENERATOR}|{seed}".encode())
    for f in b.frames:
        h.update(f.image.tobytes())
    meta = {
        "generator": GENERATOR,
        "seed": seed,
        "index": index,
        "scene": h.hexdigest()[:16],
        "image_size": S,
        "tries": tries,
        "target_object": b.target_object,
        "target_named": True,
        **b.meta,
    }
    sample = Sample(
        id=sid,
        task=task,
        images=images,
        question=b.question,
        target_image=b.target_image,
        target_box=normalize_box(target_px, S, S),
        ref_boxes=[RefBox(i, normalize_box(r, S, S)) for i, r in b.ref_boxes],
        objects=objects,
        relations=b.relations,
        source=SOURCE,
        meta=meta,
    )
    return Generated(sample, [f.image for f in b.frames], [f.masks for f in b.frames])


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, level: int = PNG_ZLIB_LEVEL) -> bytes:
    """An (H, W, 3) uint8 array as PNG bytes: 8-bit RGB, no metadata, 'Sub' filter on every row, one zlib
    stream at ``level``. A few times faster than Pillow's adaptive filtering, and byte-stable (the bytes
    depend only on the pixels and zlib)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
    h, w, _ = image.shape
    raw = np.empty((h, 1 + 3 * w), dtype=np.uint8)
    raw[:, 0] = 1  # filter type Sub: each byte minus the same channel of the previous pixel (mod 256)
    body = raw[:, 1:].reshape(h, w, 3)
    body[:, 0] = image[:, 0]
    np.subtract(image[:, 1:], image[:, :-1], out=body[:, 1:])
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"".join(
        (
            PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), level)),
            _png_chunk(b"IEND", b""),
        )
    )


def generate_dataset(
    out_dir: str | Path,
    n_per_task: int,
    seed: int = 0,
    tasks: Sequence[str] | None = None,
    config: SynthConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Sample]:
    """Write ``out_dir/samples.jsonl`` and ``out_dir/images/<task>/*.png``; return the samples.

    Samples come task by task (canonical order) and by index; image paths in the records are relative to
    ``out_dir``. Refuses to overwrite an existing ``samples.jsonl`` unless ``overwrite`` (which first removes
    the previous samples.jsonl and images/<task>/ folders).
    """
    config = (config or SynthConfig()).validate()
    tasks = check_tasks(tasks)
    if isinstance(n_per_task, bool) or not isinstance(n_per_task, int) or n_per_task < 1:
        raise MirgError(f"--n-per-task must be a positive integer, got {n_per_task!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MirgError(f"--seed must be a non-negative integer, got {seed!r}")
    out = Path(out_dir)
    jsonl = out / "samples.jsonl"
    if out.exists() and not out.is_dir():
        raise MirgError(f"--out {out} exists and is not a folder")
    if jsonl.exists():
        if not overwrite:
            raise MirgError(f"{jsonl} already exists; pass --overwrite to replace it")
        jsonl.unlink()
        for t in SYNTH_TASKS:
            shutil.rmtree(out / "images" / t, ignore_errors=True)
    for t in tasks:
        (out / "images" / t).mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    samples: list[Sample] = []
    with tqdm(total=n_per_task * len(tasks), desc="mig-synth", unit="sample", disable=not progress) as bar:
        for t in tasks:
            for i in range(n_per_task):
                g = generate_sample(t, i, seed, config)
                for rel, img in zip(g.sample.images, g.images, strict=True):
                    (out / rel).write_bytes(encode_png(img))
                samples.append(g.sample)
                bar.update(1)
    write_samples(samples, jsonl)
    return samples


def chance_levels(samples: Sequence[Sample]) -> dict[str, float]:
    """How well image guessing without looking does on ``samples`` (image accuracy, not boxes):
    ``uniform`` = expected accuracy of a uniformly random image; ``best_constant`` = accuracy of always
    answering the most frequent target index; ``unnamed_share`` = share of samples whose question does not
    name the target image."""
    if not samples:
        return {"uniform": 0.0, "best_constant": 0.0, "unnamed_share": 0.0}
    uniform = float(np.mean([1.0 / s.num_images for s in samples]))
    counts = Counter(s.target_image for s in samples)
    best = counts.most_common(1)[0][1] / len(samples)
    unnamed = sum(not s.meta.get("target_named", True) for s in samples) / len(samples)
    return {"uniform": round(uniform, 4), "best_constant": round(best, 4), "unnamed_share": round(unnamed, 4)}
