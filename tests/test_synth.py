"""MIG-Synth: renderer, determinism, seed disjointness, writing, CLI and preview."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mirg.cli import main
from mirg.errors import MirgError
from mirg.sample import read_samples
from mirg.synth import (
    SHAPES,
    SYNTH_TASKS,
    Background,
    ObjectSpec,
    generate_dataset,
    generate_sample,
    render_objects,
    shape_mask,
)
from mirg.synth.generate import encode_png
from mirg.synth.render import tight_box

# --- renderer ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_masks_fill_their_square(shape: str) -> None:
    for d in (7, 16, 33):
        m = shape_mask(shape, d)
        assert m.shape == (d, d) and m.any()
        x1, y1, x2, y2 = tight_box(m)
        assert x2 - x1 >= 0.6 * d and y2 - y1 >= 0.6 * d  # clearly visible, roughly fills its square


def test_render_objects_boxes_are_tight_pixel_boxes() -> None:
    specs = [ObjectSpec("star", "red", 30.0, 30.0, 21), ObjectSpec("ring", (1, 2, 3), 90.5, 70.5, 30)]
    r = render_objects(specs, 128, background=Background((200, 200, 200), 20.0, 0.5))
    assert r.image.shape == (128, 128, 3)
    for spec, m, b in zip(specs, r.masks, r.boxes, strict=True):
        full = m.full(128, 128)
        assert b == tight_box(full)
        assert np.all(r.image[full] == spec.rgb)
        x1, y1 = spec.origin  # inside the nominal square
        assert x1 <= b[0] and y1 <= b[1] and b[2] <= x1 + spec.diameter and b[3] <= y1 + spec.diameter
    # occlusion and clipping: the box follows the visible pixels only
    over = render_objects(
        [ObjectSpec("square", "blue", 10, 10, 30), ObjectSpec("circle", "red", 60, 60, 40)], 64
    )
    assert over.boxes[0] is not None and over.boxes[0][0] == 0 and over.boxes[0][1] == 0
    hidden = render_objects(
        [ObjectSpec("circle", "blue", 30, 30, 10), ObjectSpec("square", "red", 30, 30, 30)], 64
    )
    assert hidden.boxes[0] is None and hidden.masks[0].count == 0
    assert render_objects([ObjectSpec("circle", "blue", -50, -50, 10)], 64).boxes == [None]
    n1 = render_objects(specs, 64, noise=5.0, rng=np.random.default_rng(1))
    n2 = render_objects(specs, 64, noise=5.0, rng=np.random.default_rng(1))
    assert np.array_equal(n1.image, n2.image)


def test_png_encoder_round_trips() -> None:
    img = generate_sample("view_diff", 0, 0).images[1]
    data = encode_png(img)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), img)
    assert encode_png(img) == data


# --- determinism and disjoint seeds ------------------------------------------------------------------------


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", 2, seed=5, progress=False)
    generate_dataset(tmp_path / "b", 2, seed=5, progress=False)
    ta, tb = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert ta == tb
    assert len(ta) == 1 + sum(s.num_images for s in a)
    # a sample does not depend on which other tasks were generated with it
    generate_dataset(tmp_path / "c", 2, seed=5, tasks=["reasoning"], progress=False)
    tc = _tree_bytes(tmp_path / "c")
    assert all(tc[k] == ta[k] for k in tc if k.startswith("images/"))
    rec = (tmp_path / "c" / "samples.jsonl").read_text().splitlines()
    assert all(line in ta["samples.jsonl"].decode().splitlines() for line in rec)
    # the records read back and their images exist
    samples = read_samples(tmp_path / "a" / "samples.jsonl")
    assert [s.id for s in samples] == [s.id for s in a]
    assert all((tmp_path / "a" / p).is_file() for s in samples for p in s.images)


def test_different_seeds_share_no_scene() -> None:
    def hashes(seed: int) -> tuple[set[str], set[str]]:
        images, scenes = set(), set()
        for task in SYNTH_TASKS:
            for i in range(6):
                g = generate_sample(task, i, seed)
                scenes.add(g.sample.meta["scene"])
                images.update(hashlib.sha1(im.tobytes()).hexdigest() for im in g.images)
        return images, scenes

    i0, s0 = hashes(0)
    i1, s1 = hashes(1)
    assert not i0 & i1, "an image appears under two seeds"
    assert not s0 & s1
    assert len(s0) == 6 * len(SYNTH_TASKS)


# --- writing, CLI, preview --------------------------------------------------------------------------------


def test_refuses_to_overwrite_without_flag(tmp_path: Path) -> None:
    generate_dataset(tmp_path, 1, tasks=["diff"], progress=False)
    with pytest.raises(MirgError, match="--overwrite"):
        generate_dataset(tmp_path, 1, tasks=["diff"], progress=False)
    generate_dataset(tmp_path, 1, tasks=["region"], overwrite=True, progress=False)
    assert not (tmp_path / "images" / "diff").exists()
    assert [s.task for s in read_samples(tmp_path / "samples.jsonl")] == ["region"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n-per-task", "0"], "--n-per-task must be a positive integer"),
        (["--n-per-task", "1", "--tasks", "diff,nope"], "unknown task(s): nope"),
        (["--n-per-task", "1", "--image-size", "16"], "--image-size must be between 64 and 1024"),
        (["--n-per-task", "1", "--images", "1-9"], "--images must be a range within 2-6"),
        (["--n-per-task", "1", "--distractors", "a-b"], "--distractors must be N or MIN-MAX"),
        (["--n-per-task", "1", "--object-size", "0.3,0.1"], "--object-size must be"),
        (["--n-per-task", "1", "--seed", "-1"], "--seed must be a non-negative integer"),
    ],
)
def test_cli_bad_input_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    rc = main(["synth", "--out", str(tmp_path / "o"), "--quiet", *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("mirg: error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_cli_writes_dataset_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "data", tmp_path / "sheet.png"
    argv = ["synth", "--out", str(out), "--n-per-task", "1", "--seed", "3", "--preview", str(png)]
    assert main([*argv, "--tasks", "diff", "cross_relation,region", "--image-size", "96"]) == 0
    samples = read_samples(out / "samples.jsonl")
    assert [s.task for s in samples] == ["diff", "cross_relation", "region"]
    assert all(Image.open(out / p).size == (96, 96) for s in samples for p in s.images)
    assert "wrote 3 samples" in capsys.readouterr().err
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 100
