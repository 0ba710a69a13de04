"""End to end: a known target box, rendered as the model would answer for the processor-resized image, parsed
back by the eval path, lands within one original pixel (both dialects, sizes not multiples of 28)."""

from __future__ import annotations

import pytest
from PIL import Image

from mirg.answers import get_dialect
from mirg.boxes import normalized_to_original_pixels
from mirg.evaluation.backends import Generation, Request, TransformersBackend
from mirg.evaluation.runner import parse_generation
from mirg.prompting import resized_sizes
from mirg.sample import Sample

# (width, height) of Image-1..3; none is a multiple of 28, one is upscaled (min_pixels), one downscaled.
SIZES = [(57, 203), (230, 61), (199, 141)]
BOX_PX = [(3, 17, 41, 150), (100, 5, 229, 60), (17, 33, 160, 140)]  # target box per image, original pixels


@pytest.mark.parametrize("dialect_name", ["qwen2_5_vl", "qwen2_vl"])
@pytest.mark.parametrize("target", [1, 2, 3])
def test_known_box_round_trips_within_one_pixel(tiny_model, dialect_name, target):
    dialect = get_dialect(dialect_name)
    w, h = SIZES[target - 1]
    x1, y1, x2, y2 = BOX_PX[target - 1]
    sample = Sample(id="c", task="t", images=["1", "2", "3"], question="q", target_image=target,
                    target_box=(x1 / w, y1 / h, x2 / w, y2 / h))  # fmt: skip
    images = [Image.new("RGB", wh) for wh in SIZES]
    inputs = TransformersBackend(tiny_model).encode([Request(sample, images)])
    resized = resized_sizes(inputs["image_grid_thw"].tolist())
    assert all(r != s for r, s in zip(resized, SIZES, strict=True))  # really resized
    native = dialect.from_normalized(sample.target_box, resized[target - 1])
    text = dialect.render_completion("reasoning", target, native)
    rec = parse_generation(sample, Generation(text, 0, resized), dialect)
    assert rec["pred_image"] == target and rec["parse_error"] is None
    back = normalized_to_original_pixels(rec["pred_box"], w, h)
    assert back == pytest.approx(BOX_PX[target - 1], abs=1.0)


def test_qwen25_pixels_are_of_the_resized_image_not_the_original(tiny_model):
    """The classic bug: reading Qwen2.5-VL pixels against the original size is off by the resize factor."""
    dialect = get_dialect("qwen2_5_vl")
    sample = Sample(
        id="c", task="t", images=["1"], question="q", target_image=1, target_box=(0.25, 0.25, 0.75, 0.75)
    )
    inputs = TransformersBackend(tiny_model).encode([Request(sample, [Image.new("RGB", (57, 203))])])
    (rw, rh) = resized_sizes(inputs["image_grid_thw"].tolist())[0]
    assert (rw, rh) == (56, 196) or (rw % 28 == 0 and rh % 28 == 0)
    text = dialect.render_completion("r", 1, dialect.from_normalized(sample.target_box, (rw, rh)))
    rec = parse_generation(sample, Generation(text, 0, [(rw, rh)]), dialect)
    assert rec["pred_box"] == pytest.approx(sample.target_box, abs=1 / 50)


def test_unparseable_and_out_of_range_answers(tiny_model):
    d = get_dialect("qwen2_5_vl")
    s = Sample(
        id="c", task="t", images=["1", "2"], question="q", target_image=1, target_box=(0.1, 0.1, 0.2, 0.2)
    )
    gen = Generation("no tags at all", 0, [(56, 56), (84, 56)])
    assert parse_generation(s, gen, d) == {
        "pred_image": None,
        "pred_box": None,
        "parse_error": "no box found",
    }
    gen = Generation(
        '<think>x</think><answer>{"image": 3, "bbox_2d": [1, 2, 3, 4]}</answer>', 0, gen.resized_wh
    )
    rec = parse_generation(s, gen, d)
    assert rec["pred_image"] == 3 and rec["pred_box"] is None and "out of range" in rec["parse_error"]
    gen = Generation('<answer>{"image": 2, "bbox_2d": [1, 2, 300, 4]}</answer>', 0, gen.resized_wh)
    rec = parse_generation(s, gen, d)
    assert rec["pred_image"] == 2 and rec["pred_box"] is not None and "outside" in rec["parse_error"]
