"""Shared fixtures of ``tests/`` and ``lab/tests/`` (one registration for both): the tiny Qwen2.5-VL built once per
session, and small hand-made Sample sets."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests check values, not speed (performance lives in benchmarks/): no per-example deadline. Hypothesis's
# default 200 ms failed test_iou_matches_independent_vectorised once on a loaded machine (270 ms on its first call).
settings.register_profile("mirg", deadline=None)
settings.load_profile("mirg")

COLORS = {"red": (220, 30, 30), "green": (30, 160, 60), "blue": (40, 70, 220)}


def make_synthetic_samples(folder: Path, n: int, seed: int = 0, max_images: int = 3) -> Path:
    """Write ``n`` simple multi-image Samples (PIL-drawn shapes) and their PNGs under ``folder``.

    Each sample has 1..max_images images of assorted sizes (most not multiples of 28); the target is the
    image holding the red shape. Returns the Sample JSONL path (image paths relative to it).
    """
    from PIL import Image, ImageDraw

    from mirg.sample import Sample, write_samples

    rng = random.Random(seed)
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        k = rng.randint(1, max_images)
        target = rng.randint(1, k)
        paths, box = [], None
        for j in range(1, k + 1):
            w, h = rng.randint(60, 230), rng.randint(60, 230)
            im = Image.new("RGB", (w, h), (245, 245, 240))
            d = ImageDraw.Draw(im)
            bw, bh = rng.randint(w // 6, w // 2), rng.randint(h // 6, h // 2)
            x1, y1 = rng.randint(0, w - bw), rng.randint(0, h - bh)
            color = "red" if j == target else rng.choice(["green", "blue"])
            d.ellipse((x1, y1, x1 + bw, y1 + bh), fill=COLORS[color])
            if j == target:
                box = (x1 / w, y1 / h, (x1 + bw) / w, (y1 + bh) / h)
            rel = f"images/s{i:04d}_{j}.png"
            im.save(folder / rel)
            paths.append(rel)
        samples.append(
            Sample(
                id=f"s{i:04d}",
                task=["common_object", "spot_diff"][i % 2],
                images=paths,
                question="Which image shows the red circle? Locate it." + " Look carefully." * (i % 3),
                target_image=target,
                target_box=box,
                source="test",
            )
        )
    path = folder / "samples.jsonl"
    write_samples(samples, path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Qwen2.5-VL checkpoint, built once per test session (~2 s)."""
    from mirg.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    """The tiny checkpoint loaded with :func:`mirg.models.loading.load_model` (CPU, fp32), shared."""
    from mirg.models.loading import load_model

    return load_model(tiny_model_dir)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-sample Sample JSONL with images (shared, read-only)."""
    return make_synthetic_samples(tmp_path_factory.mktemp("synthetic"), 12)


@pytest.fixture
def make_samples() -> Callable[..., Path]:
    return make_synthetic_samples
