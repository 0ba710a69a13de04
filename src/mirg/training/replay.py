"""SFT replay: perception samples written as SFT trajectories (``mirg sft``'s ``replay_file``).

Fine-tuning a small base on a few hundred multi-image trajectories for many epochs wipes the single-image
grounding it was pretrained for. Mixing samples of the pretraining's distribution into the SFT set ("replay",
"rehearsal") is the standard remedy for such forgetting (measurements: lab/NOTES.md);
:func:`write_replay` writes them in the format ``mirg sft`` reads, for the demo and a user's own run alike.

Each single-image row is one ``refer`` sample of :mod:`mirg.synth.perception`: the first question in the full mirg
prompt (the prompt SFT, RL and evaluation use), up to two more questions about other objects of the same image as
extra turns, and completions ``<think>Image-1 shows ...</think>`` then the ``qwen2_5_vl`` answer in pixels of the
image, which the processor does not resize. With ``images=(lo, hi)`` above 1, a row holds lo..hi images (uniformly):
one multi-image referring sample (:func:`~mirg.synth.perception.make_multi_sample`: the named object in one image,
its expression unique across all, the answer ``{"image": k, "bbox_2d": [...]}`` in pixels of image k), which
teaches a base that has seen single images only to read a box off a second image.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from mirg.errors import MirgError

# Replay scenes are drawn from their own stream: (seed + REPLAY_SEED_OFFSET, index). Pretraining uses (seed, .) and
# its held-out set (seed + 1,000,003, .), so replay rows are neither training nor held-out scenes of a base
# pretrained with a small seed.
REPLAY_SEED_OFFSET = 2_000_029
REPLAY_FILE = "replay.jsonl"


def replay_records(
    folder: str | Path,
    n: int,
    *,
    seed: int = 0,
    image_size: int = 224,
    max_objects: int = 5,
    processor: Any = None,
    images: tuple[int, int] = (1, 1),
) -> list[dict[str, Any]]:
    """Render ``n`` single-image referring samples into ``folder/images/`` and return their trajectory rows
    (``id``, ``task``, ``messages``, ``images`` relative to ``folder``). With the model's ``processor``, refuse an
    image size it would resize (the answers are pixels of the image as rendered)."""
    import numpy as np

    from mirg.synth.generate import save_png
    from mirg.synth.perception import DataConfig, Stage, make_multi_sample, make_sample, perception_rng

    if n < 1:
        raise MirgError(f"replay: the number of samples must be >= 1, got {n}")
    if image_size % 28:
        raise MirgError(
            f"replay: image_size must be a multiple of 28 (the processor would resize), got {image_size}"
        )
    if not 1 <= max_objects <= 6:
        raise MirgError(f"replay: max_objects must be in 1..6, got {max_objects}")
    lo, hi = images
    if not 1 <= lo <= hi <= 6:
        raise MirgError(f"replay: images must be (min, max) with 1 <= min <= max <= 6, got {images}")
    if processor is not None:
        from mirg.prompting import resized_size

        seen = resized_size((image_size, image_size), processor)
        if seen != (image_size, image_size):
            raise MirgError(
                f"replay: the model's processor resizes {image_size} px images to {seen[0]}x{seen[1]}; "
                "use the image size the base was pretrained on"
            )
    cfg = replace(DataConfig(image_sizes=(image_size,), size_weights=(1.0,)), mirg_prompt=1.0)
    stage = Stage((1, max_objects), (1.0, 0.0, 0.0))
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        draw = np.random.default_rng([seed + REPLAY_SEED_OFFSET, i, 1])
        m = lo + int(draw.integers(hi - lo + 1))
        rng = perception_rng(seed + REPLAY_SEED_OFFSET, i)
        if m == 1:
            s = make_sample(rng, cfg, stage, task="refer")
            names, task = [f"images/replay-{i:05d}.png"], "replay-refer"
        else:
            s = make_multi_sample(rng, cfg, stage, images=m)
            names, task = [f"images/replay-{i:05d}-{j}.png" for j in range(1, m + 1)], "replay-refer-multi"
        for image, name in zip(s.images, names, strict=True):
            save_png(image, folder / name)
        rows.append({"id": f"replay-{i:05d}", "task": task, "messages": s.messages(), "images": names})
    return rows


def write_replay(folder: str | Path, n: int, **options: Any) -> Path:
    """Write ``folder/replay.jsonl`` (and its images) with ``n`` replay rows (``options`` as in
    :func:`replay_records`); returns the JSONL path."""
    rows = replay_records(folder, n, **options)
    path = Path(folder) / REPLAY_FILE
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
