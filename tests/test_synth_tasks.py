"""MIG-Synth task families, checked by construction and independently of the generator's own checks.

For every task a second, separate reading of the question (from the text and the object annotations only)
must find exactly one answer, the generator's target. The target box must be the tight box of the target's
drawn pixels (within one pixel), no other object's pixels may fall inside it, and every annotated mask must
carry its object's colour in the image.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from mirg.boxes import iou
from mirg.sample import ObjectAnn, Sample
from mirg.synth import (
    COLORS,
    SHAPES,
    SIZES,
    SYNTH_TASKS,
    Generated,
    SynthConfig,
    chance_levels,
    generate_sample,
)
from mirg.synth.render import tight_box

N_PER_TASK = 12
S = SynthConfig().image_size


@pytest.fixture(scope="module")
def generated() -> dict[str, list[Generated]]:
    return {t: [generate_sample(t, i, seed=7) for i in range(N_PER_TASK)] for t in SYNTH_TASKS}


# --- an independent reading of each question -------------------------------------------------------------


def sig(o: ObjectAnn) -> tuple[str, str, str]:
    return o.category, o.attributes["color"], o.attributes["size"]


def named_image(q: str, pattern: str) -> int:
    m = re.search(pattern, q)
    assert m, f"no image named in {q!r}"
    return int(m.group(1))


def close(a: Any, b: Any, tol: float = 1e-5) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


SPATIAL = {
    "below": lambda b, a: b[1] >= a[3] and min(a[2], b[2]) > max(a[0], b[0]),
    "above": lambda b, a: b[3] <= a[1] and min(a[2], b[2]) > max(a[0], b[0]),
    "to the left of": lambda b, a: b[2] <= a[0] and min(a[3], b[3]) > max(a[1], b[1]),
    "to the right of": lambda b, a: b[0] >= a[2] and min(a[3], b[3]) > max(a[1], b[1]),
}


def matches_description(o: ObjectAnn, words: list[str]) -> bool:
    """Every size, colour or shape word in ``words`` is one of ``o``'s (the vocabularies are disjoint)."""
    return all(w in sig(o) for w in words if w in (*SIZES, *COLORS, *SHAPES))


def value(o: ObjectAnn, attr: str) -> str:
    return o.attributes["color"] if attr == "colour" else o.category


def answers(g: Generated) -> list[tuple[int, int]]:
    """All (image, object index) pairs that satisfy the question, found from the text and annotations."""
    s = g.sample
    q, objs, n = s.question, s.objects, s.num_images
    if s.task == "diff":
        t = named_image(q, r"difference in Image-(\d)\.")
        other = {(sig(o), tuple(o.box)) for o in objs[2 - t]}
        return [(t, i) for i, o in enumerate(objs[t - 1]) if (sig(o), tuple(o.box)) not in other]
    if s.task == "view_diff":
        assert "in Image-2" in q
        dx, dy = (v / S for v in s.meta["shift_px"])
        moved = [(sig(o), (o.box[0] + dx, o.box[1] + dy, o.box[2] + dx, o.box[3] + dy)) for o in objs[0]]
        return [
            (2, i)
            for i, o in enumerate(objs[1])
            if not any(k == sig(o) and close(b, o.box) for k, b in moved)
        ]
    if s.task == "common_object":
        t = named_image(q, r"locate this object in Image-(\d)\.")
        return [
            (t, i) for i, o in enumerate(objs[t - 1]) if all(any(sig(p) == sig(o) for p in im) for im in objs)
        ]
    if s.task in ("object_tracking", "multi_view"):
        t = named_image(q, r"locate (?:it|this object) in Image-(\d)\.")
        m = re.search(r"<\|box_start\|>\((\d+),(\d+)\),\((\d+),(\d+)\)<\|box_end\|>", q)
        assert m and len(s.ref_boxes) == 1 and s.ref_boxes[0].image == 1
        qbox = [int(v) / 1000 for v in m.groups()]
        assert close(qbox, s.ref_boxes[0].box, 0.0011)
        at_ref = [o for o in objs[0] if iou(o.box, s.ref_boxes[0].box) > 0.5]
        assert len(at_ref) == 1
        return [(t, i) for i, o in enumerate(objs[t - 1]) if sig(o) == sig(at_ref[0])]
    if s.task == "refer_grounding":
        assert len(objs[0]) == 1
        return [
            (k, i) for k in range(2, n + 1) for i, o in enumerate(objs[k - 1]) if sig(o) == sig(objs[0][0])
        ]
    if s.task == "group_grounding":
        m = re.search(r"<\|object_ref_start\|>the (.+?)<\|object_ref_end\|>", q)
        assert m
        words = m.group(1).split()
        return [
            (k, i)
            for k in range(1, n + 1)
            for i, o in enumerate(objs[k - 1])
            if matches_description(o, words)
        ]
    if s.task == "reasoning":
        m = re.search(r"Which object in Image-(\d) has the same (colour|shape) as the object in Image-1\?", q)
        assert m and len(objs[0]) == 1
        t, attr = int(m.group(1)), m.group(2)
        return [(t, i) for i, o in enumerate(objs[t - 1]) if value(o, attr) == value(objs[0][0], attr)]
    if s.task == "correspondence":
        img1 = g.images[0]
        red = np.all(img1 == (255, 0, 0), axis=2)
        x1, y1, x2, y2 = tight_box(red)
        inside = [
            o
            for o in objs[0]
            if o.box[0] * S > x1 and o.box[2] * S < x2 and o.box[1] * S > y1 and o.box[3] * S < y2
        ]
        assert len(inside) == 1
        return [(2, i) for i, o in enumerate(objs[1]) if o.category == inside[0].category]
    if s.task == "cross_relation":
        m = re.search(
            r"the same (colour|shape) as the object (above|below|to the left of|to the right of) the (.+?) in Image-(\d)\.$",
            q,
        )
        assert m, q
        attr, rel, anchor_words, j = m.group(1), m.group(2), m.group(3).split(), int(m.group(4))
        anchors = [o for o in objs[j - 1] if matches_description(o, anchor_words)]
        assert len(anchors) == 1, "anchor description must be unique in its image"
        related = [o for o in objs[j - 1] if o is not anchors[0] and SPATIAL[rel](o.box, anchors[0].box)]
        assert len(related) == 1, "the spatial relation must pick exactly one object"
        val = value(related[0], attr)

        named = re.match(r"In Image-(\d), find the object that has", q)
        if named:
            t = int(named.group(1))
            return [(t, i) for i, o in enumerate(objs[t - 1]) if value(o, attr) == val]
        m2 = re.match(rf"Find the (.+?), in an image other than Image-{j}, that has", q)
        assert m2, q
        filt = m2.group(1).split()
        return [
            (k, i)
            for k in range(1, n + 1)
            if k != j
            for i, o in enumerate(objs[k - 1])
            if value(o, attr) == val and matches_description(o, filt)
        ]
    raise AssertionError(f"no reader for task {s.task}")


# --- tests ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [t for t in SYNTH_TASKS if t != "region"])
def test_exactly_one_answer_and_exact_box(generated: dict[str, list[Generated]], task: str) -> None:
    for g in generated[task]:
        s = g.sample
        t, j = s.target_image, s.meta["target_object"]
        assert answers(g) == [(t, j)], s.id
        # the target box is the tight box of the target's drawn pixels (within one pixel)
        mask = g.masks[t - 1][j].full(S, S)
        px = tight_box(mask)
        assert px is not None
        assert all(abs(b * S - p) <= 1.0 for b, p in zip(s.target_box, px, strict=True)), s.id
        x1, y1, x2, y2 = (round(v * S) for v in s.target_box)
        assert mask[y1:y2, x1:x2].sum() == mask.sum(), "target pixels outside the target box"
        # ... and no distractor has a pixel inside it
        for k, m in enumerate(g.masks[t - 1]):
            if k != j:
                assert not m.full(S, S)[y1:y2, x1:x2].any(), f"{s.id}: object {k} inside the target box"


@pytest.mark.parametrize("task", SYNTH_TASKS)
def test_annotations_match_pixels(generated: dict[str, list[Generated]], task: str) -> None:
    for g in generated[task]:
        s = g.sample
        assert Sample.from_dict(s.to_dict()).to_dict() == s.to_dict()
        assert len(s.objects) == len(s.images) == len(g.images) == len(g.masks)
        lo, hi = {"object_tracking": (6, 6), "diff": (2, 2)}.get(task, (2, 6))
        assert lo <= s.num_images <= hi
        for k, (img, anns, masks) in enumerate(zip(g.images, s.objects, g.masks, strict=True), start=1):
            assert img.shape == (S, S, 3) and img.dtype == np.uint8
            owner = np.zeros((S, S), dtype=int)
            for o, m in zip(anns, masks, strict=True):
                full = m.full(S, S)
                assert full.any()
                owner += full
                box = tight_box(full)
                assert close(o.box, [v / S for v in box]), (
                    f"{s.id}: annotation box is not the mask's tight box"
                )
                perturbed = task == "view_diff" and k == 2
                if not perturbed:
                    assert np.all(img[full] == COLORS[o.attributes["color"]]), (
                        f"{s.id}: mask pixels not its colour"
                    )
            assert owner.max() <= 1, "objects overlap"
        for r in s.relations:
            assert isinstance(r["text"], str) and r["text"] and "type" in r
            for key in ("subject", "object"):
                if key in r:
                    ref = r[key]
                    assert 0 <= ref["object"] < len(s.objects[ref["image"] - 1])


def test_region_box_is_the_crop_window(generated: dict[str, list[Generated]]) -> None:
    for g in generated["region"]:
        s = g.sample
        assert s.target_image == 1
        k = int(re.search(r"the region shown in Image-(\d)", s.question).group(1))  # type: ignore[union-attr]
        x1, y1, x2, y2 = (round(v * S) for v in s.target_box)
        assert close([x1 / S, y1 / S, x2 / S, y2 / S], s.target_box)
        side = x2 - x1
        assert side == y2 - y1 and side < S
        # nearest-neighbour zoom of the window, computed here independently, reproduces the crop image
        idx = ((2 * np.arange(S) + 1) * side) // (2 * S)  # source pixel under each output pixel's centre
        crop = g.images[0][y1 + idx][:, x1 + idx]
        assert np.array_equal(crop, g.images[k - 1]), s.id
        # the other crops come from clearly different windows
        windows = [r["box"] for r in s.relations if r["type"] == "crop_of"]
        assert len(windows) == s.num_images - 1
        assert sum(iou(w, s.target_box) > 0.5 for w in windows) == 1
        # at least one whole object inside the window
        assert any(not o.attributes["truncated"] for o in s.objects[k - 1])


def test_questions_name_images_and_follow_style(generated: dict[str, list[Generated]]) -> None:
    for task, gs in generated.items():
        for g in gs:
            q = g.sample.question
            assert "image-" not in q and "th image" not in q, q
            for m in re.finditer(r"Image-(\d)", q):
                assert 1 <= int(m.group(1)) <= g.sample.num_images
            if g.sample.meta["target_named"]:
                assert f"Image-{g.sample.target_image}" in q
            if task in ("object_tracking", "multi_view"):
                assert "<|box_start|>" in q and g.sample.ref_boxes


def test_target_positions_vary_and_chance_is_low(generated: dict[str, list[Generated]]) -> None:
    samples = [g.sample for gs in generated.values() for g in gs]
    for task in ("common_object", "object_tracking", "group_grounding", "cross_relation"):
        assert len({g.sample.target_image for g in generated[task]}) >= 3, task
    for task in SYNTH_TASKS:  # the target's position in the annotation list carries no information
        idx = [g.sample.meta["target_object"] for g in generated[task]]
        if task != "region" and task not in ("refer_grounding", "reasoning"):
            assert len(set(idx)) > 1, task
    c = chance_levels(samples)
    assert c["uniform"] < 0.4
    assert c["best_constant"] < 0.6
    assert c["unnamed_share"] > 0.1


def test_distractor_and_size_knobs() -> None:
    few = SynthConfig(distractors=(0, 0))
    many = SynthConfig(distractors=(6, 6), object_size=(0.1, 0.18))
    g0 = generate_sample("group_grounding", 0, 1, few)
    g1 = generate_sample("group_grounding", 0, 1, many)
    assert sum(map(len, g0.sample.objects)) < sum(map(len, g1.sample.objects))
    big = generate_sample("diff", 0, 1, SynthConfig(image_size=224, images=(2, 2)))
    assert big.images[0].shape == (224, 224, 3)
    noisy = generate_sample("reasoning", 0, 1, SynthConfig(noise=8.0))
    clean = generate_sample("reasoning", 0, 1)
    assert noisy.sample.target_box == clean.sample.target_box
    assert not np.array_equal(noisy.images[1], clean.images[1])
    six = generate_sample("multi_view", 0, 1, SynthConfig(images=(6, 6)))
    assert six.sample.num_images == 6
