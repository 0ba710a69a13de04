import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirg import boxes as B

coord = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def box(draw):
    x1, x2 = sorted((draw(coord), draw(coord)))
    y1, y2 = sorted((draw(coord), draw(coord)))
    return (x1, y1, x2, y2)


def reference_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """An independent vectorised IoU: intersection from clipped corner arrays, union by inclusion-exclusion."""
    lt = np.maximum(a[:, :2], b[:, :2])
    rb = np.minimum(a[:, 2:], b[:, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh.prod(axis=1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@given(box(), box())
def test_iou_properties(a, b):
    v = B.iou(a, b)
    assert 0.0 <= v <= 1.0
    assert v == pytest.approx(B.iou(b, a), abs=1e-12)
    if B.area(a) > 0:
        assert B.iou(a, a) == pytest.approx(1.0)
    g = B.giou(a, b)
    assert -1.0 - 1e-12 <= g <= v + 1e-12


@settings(max_examples=50)
@given(st.lists(st.tuples(box(), box()), min_size=1, max_size=40))
def test_iou_matches_independent_vectorised(pairs):
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    scalar = np.array([B.iou(x, y) for x, y in pairs])
    np.testing.assert_allclose(scalar, reference_iou(a, b), atol=1e-9)


def test_iou_hand_values():
    assert B.iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert B.iou((0, 0, 1, 1), (1, 0, 2, 1)) == 0.0  # touching edges do not overlap
    assert B.iou((0, 0, 0, 1), (0, 0, 0, 1)) == 0.0  # degenerate
    assert B.giou((0, 0, 1, 1), (2, 0, 3, 1)) == pytest.approx(-1 / 3)


# --- smart_resize against transformers' own function -------------------------------------------------------

SIZES = [
    (1, 1), (10, 10), (27, 29), (28, 28), (55, 57), (100, 3000), (3000, 100), (15, 2999), (2999, 15),
    (112, 112), (123, 457), (480, 640), (719, 1281), (1080, 1920), (2160, 3840), (4000, 6000), (8192, 8192),
    (20000, 150), (150, 20000), (333, 1), (1, 199),
]  # fmt: skip
PIXEL_SETTINGS = [
    (56 * 56, 28 * 28 * 1280),
    (256 * 28 * 28, 1280 * 28 * 28),
    (3136, 12845056),
    (3136, 112 * 112),
]


@pytest.mark.parametrize("min_pixels, max_pixels", PIXEL_SETTINGS)
def test_smart_resize_equals_transformers(min_pixels, max_pixels):
    # The PIL image processor is the one used where torchvision is absent (this project's CPU machines).
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

    rng = np.random.default_rng(0)
    sizes = SIZES + [tuple(int(v) for v in rng.integers(1, 5000, 2)) for _ in range(300)]
    for h, w in sizes:
        try:
            expected = hf_smart_resize(h, w, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
        except ValueError:
            with pytest.raises(ValueError):
                B.smart_resize(h, w, 28, min_pixels, max_pixels)
            continue
        assert B.smart_resize(h, w, 28, min_pixels, max_pixels) == expected, (h, w)
        rh, rw = expected
        assert rh % 28 == 0 and rw % 28 == 0


@pytest.mark.parametrize("h, w", [(37, 301), (112, 112), (250, 97), (480, 640), (1, 60)])
def test_processor_resizes_like_smart_resize(h, w):
    """The image processor itself (not just its helper) lands on our size: image_grid_thw * patch_size."""
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    proc = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=28 * 28 * 64)
    out = proc(images=[Image.new("RGB", (w, h))], return_tensors="np")
    assert B.resized_size_from_grid(out["image_grid_thw"][0]) == B.smart_resize(h, w, 28, 3136, 28 * 28 * 64)


def test_resized_size_from_grid():
    assert B.resized_size_from_grid((1, 8, 12)) == (112, 168)


# --- conversions round-trip ---------------------------------------------------------------------------------


@given(box(), st.integers(28, 4000), st.integers(28, 4000))
def test_pixels_roundtrip_within_one_pixel(b, w, h):
    px = B.normalized_to_pixels(b, w, h)
    back = B.pixels_to_normalized(px, w, h)
    for v, u, scale in zip(b, back, (w, h, w, h), strict=True):
        assert abs(v - u) * scale <= 0.5 + 1e-9
    # pixel -> normalized -> pixel is exact
    assert B.normalized_to_pixels(back, w, h) == px


@given(box())
def test_qwen2_roundtrip_within_one_unit(b):
    q = B.normalized_to_qwen2(b)
    assert all(0 <= v <= 999 for v in q)
    back = B.qwen2_to_normalized(q)
    for v, u in zip(b, back, strict=True):
        assert abs(v - u) * 1000 <= 1.0 + 1e-9
    assert B.normalized_to_qwen2(back) == q


@given(st.tuples(*[st.integers(0, 999)] * 4))
def test_qwen2_ints_exact(q):
    assert B.normalized_to_qwen2(B.qwen2_to_normalized(q)) == q


def test_original_pixels_through_resized_image():
    # a 1000x750 photo resized by the processor; a box given in original pixels survives the round trip
    h, w = 750, 1000
    rh, rw = B.smart_resize(h, w, max_pixels=28 * 28 * 256)
    orig = (123, 45, 678, 700)
    norm = (orig[0] / w, orig[1] / h, orig[2] / w, orig[3] / h)
    px = B.normalized_to_pixels(norm, rw, rh)
    back = B.normalized_to_original_pixels(B.pixels_to_normalized(px, rw, rh), w, h)
    # one resized pixel is w/rw original pixels: rounding costs at most half of that
    assert all(abs(a - c) <= 0.5 * max(w / rw, h / rh) + 1e-9 for a, c in zip(orig, back, strict=True))
    assert not math.isclose(rw, w)
