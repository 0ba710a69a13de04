"""The MIG-Synth task families: one builder per task, each a small copy of a MIG-Bench task (plus the
cross-image relation family of MIRG-RL).

Every builder takes a :class:`~mirg.synth.scene.Ctx` and returns a :class:`~mirg.synth.scene.Built`. Each builds
its scene so that exactly one object answers the question, then checks that again on the rendered frames
(signatures and exact pixel boxes) and raises :class:`~mirg.synth.scene.Reject` when not, so the generator
draws a new scene. Object references in relations are ``{"image": 1-based, "object": 0-based index into that
image's object list}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from mirg.boxes import iou, normalized_to_qwen2
from mirg.synth.relations import (
    ATTRIBUTE_WORDS,
    COMMON_OBJECT,
    CORRESPONDENCE,
    CROP_OF,
    DESCRIBED_BY,
    DIFFERENCE,
    PERTURBATION,
    SAME_ATTRIBUTE,
    SAME_OBJECT,
    SAME_SCENE,
    SPATIAL,
    SPATIAL_WORDS,
)
from mirg.synth.render import SHAPES, Background, Mask, PixelBox, normalize_box, tight_box
from mirg.synth.scene import (
    COLOR_NAMES,
    SIZES,
    Built,
    Ctx,
    Frame,
    Kind,
    Obj,
    Reject,
    boxes_apart,
    ref,
)

# task -> ((min, max) images allowed, (min, max) images by default)
TASK_IMAGES: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "diff": ((2, 2), (2, 2)),
    "view_diff": ((2, 2), (2, 2)),
    "common_object": ((2, 6), (3, 5)),
    "object_tracking": ((3, 6), (6, 6)),
    "multi_view": ((2, 6), (3, 5)),
    "region": ((2, 6), (3, 4)),
    "refer_grounding": ((2, 6), (2, 3)),
    "group_grounding": ((2, 6), (3, 5)),
    "reasoning": ((2, 6), (2, 3)),
    "correspondence": ((2, 2), (2, 2)),
    "cross_relation": ((2, 6), (3, 4)),
}

GROUP_TEMPLATES: tuple[str, ...] = (
    "Please find the bounding box coordinates for the area described by: {ref}.",
    "Identify the bounding box of the region described by the following expression: {ref}.",
    "Please locate the bounding box of the region described in this sentence: {ref}.",
    "Please determine the bounding box coordinates for the area described here: {ref}.",
    "Please specify the bounding box coordinates for the region indicated by this sentence: {ref}.",
    "Please provide the bounding box coordinate of the region this sentence describes: {ref}.",
    "Provide the bounding box of the region this expression refers to: {ref}.",
    "Give the bounding box of the region that this sentence refers to: {ref}.",
)

# --- helpers ---------------------------------------------------------------------------------------------


def qwen_box(box_px: PixelBox, size: int) -> str:
    """Qwen2-VL style box text, integers in [0, 1000): ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``."""
    x1, y1, x2, y2 = normalized_to_qwen2(normalize_box(box_px, size, size))
    return f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"


def spatial(rel: str, b: PixelBox, a: PixelBox) -> bool:
    """Crisp spatial predicate on half-open boxes: is ``b`` ``rel`` ('above', 'below', 'left', 'right') of ``a``?

    'below' means b lies entirely under a (b.y1 >= a.y2) and their x-ranges overlap; the others likewise.
    """
    x_overlap = min(a[2], b[2]) > max(a[0], b[0])
    y_overlap = min(a[3], b[3]) > max(a[1], b[1])
    return {
        "below": b[1] >= a[3] and x_overlap,
        "above": b[3] <= a[1] and x_overlap,
        "left": b[2] <= a[0] and y_overlap,
        "right": b[0] >= a[2] and y_overlap,
    }[rel]


def unmatched(fa: Frame, fb: Frame, shift: tuple[int, int] = (0, 0)) -> list[int]:
    """Indices of objects in ``fa`` with no counterpart in ``fb``: same shape, colour and size, and the same
    tight pixel box once ``fa``'s box is moved back by ``shift`` (pixels; ``fa`` = ``fb`` moved by shift)."""
    dx, dy = shift
    keys = {
        (o.signature, (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy))
        for o, b in zip(fb.objs, fb.boxes, strict=True)
    }
    return [i for i, (o, b) in enumerate(zip(fa.objs, fa.boxes, strict=True)) if (o.signature, b) not in keys]


def find_all(frames: list[Frame], match: Callable[[Obj], bool], skip: int = 0) -> list[tuple[int, int]]:
    """(1-based image, object index) of every object that ``match``es, in every image but Image-``skip``."""
    return [(k, i) for k, f in enumerate(frames, 1) if k != skip for i, o in enumerate(f.objs) if match(o)]


def alike(a: Obj, b: Obj, attrs: Iterable[str]) -> bool:
    """Do ``a`` and ``b`` agree on every attribute in ``attrs`` ('shape', 'color', 'size')?"""
    return all(getattr(a, x) == getattr(b, x) for x in attrs)


def expect_one(indices: list[int], want: int, why: str) -> None:
    if indices != [want]:
        raise Reject(f"{why}: {indices} instead of [{want}]")


def distinct_objs(
    ctx: Ctx, n: int, taken: Iterable[Obj] = (), avoid_kinds: Iterable[Kind] = (), **kw: Any
) -> list[Obj]:
    """``n`` new objects whose (shape, colour) differ from each other, from ``taken`` and from ``avoid_kinds``."""
    avoid = {o.kind for o in taken} | set(avoid_kinds)
    out: list[Obj] = []
    for _ in range(n):
        out.append(ctx.new_obj(avoid_kinds=avoid, **kw))
        avoid.add(out[-1].kind)
    return out


def other_size(ctx: Ctx, o: Obj) -> Obj:
    """A new object with the shape and colour of ``o`` in another size."""
    return ctx.new_obj(shape=o.shape, color=o.color, size=ctx.choice([s for s in SIZES if s != o.size]))


def shuffled(ctx: Ctx, objs: list[Obj]) -> list[Obj]:
    """Objects in a random order (so the target's index in the annotations carries no information)."""
    return [objs[int(i)] for i in ctx.rng.permutation(len(objs))]


def zoom_window(image: np.ndarray, window: PixelBox, size: int) -> np.ndarray:
    """Nearest-neighbour zoom of a square pixel window to ``size`` x ``size``: output pixel ``i`` samples source
    pixel ``x1 + floor((i + 0.5) * side / size)`` (exact integer arithmetic), likewise for rows."""
    x1, y1, x2, _ = window
    side = x2 - x1
    idx = ((2 * np.arange(size) + 1) * side) // (2 * size)
    return image[y1 + idx][:, x1 + idx]


def same_attribute(attr: str, a: Obj, at: tuple[int, int], b: Obj, bt: tuple[int, int]) -> dict[str, Any]:
    """The SAME_ATTRIBUTE relation: object ``a`` at (image, index) ``at`` has the ``attr`` of ``b`` at ``bt``."""
    value = getattr(b, attr)
    return {
        "type": SAME_ATTRIBUTE,
        "attribute": attr,
        "value": value,
        "images": [at[0], bt[0]],
        "subject": ref(*at),
        "object": ref(*bt),
        "text": f"The {a.describe()} in Image-{at[0]} has the same {ATTRIBUTE_WORDS[attr]} ({value}) as the {b.describe()} in Image-{bt[0]}.",
    }


# --- spontaneous: difference -----------------------------------------------------------------------------


def build_diff(ctx: Ctx) -> Built:
    """Static difference: Image-2 is Image-1 with exactly one object added, removed, recoloured, reshaped or
    resized. The question names the image in which to locate the difference."""
    objs = ctx.place(distinct_objs(ctx, ctx.n_distractors() + 2))
    change = ctx.choice(("added", "removed", "color", "shape", "size"))
    orig = ctx.choice(objs)
    kinds = {o.kind for o in objs}
    new = orig
    if change == "color":
        new = replace(orig, color=ctx.choice([x for x in COLOR_NAMES if (orig.shape, x) not in kinds]))
    elif change == "shape":
        new = replace(orig, shape=ctx.choice([s for s in SHAPES if (s, orig.color) not in kinds]))
    elif change == "size":
        size = ctx.choice([s for s in SIZES if s != orig.size])
        d = ctx.diameter(size)
        cx, cy = orig.center
        new = replace(orig, size=size, diameter=d, x0=round(cx - d / 2), y0=round(cy - d / 2))
        nb = new.nominal()
        if (
            min(nb) < 0
            or max(nb) > ctx.S
            or not all(boxes_apart(nb, o.nominal(), ctx.gap) for o in objs if o is not orig)
        ):
            raise Reject("resized object does not fit")
    if change == "added":
        img1, img2, t = [o for o in objs if o is not orig], objs, 2
    elif change == "removed":
        img1, img2, t = objs, [o for o in objs if o is not orig], 1
    else:
        img1, img2, t = objs, [new if o is orig else o for o in objs], int(ctx.rng.integers(1, 3))
    bg = ctx.background()
    noise_seed = int(ctx.rng.integers(2**63))
    rank = {o.instance: r for r, o in enumerate(shuffled(ctx, objs))}  # one random order for both images
    img1 = sorted(img1, key=lambda o: rank[o.instance])
    img2 = sorted(img2, key=lambda o: rank[o.instance])
    frames = [ctx.draw(img1, bg, noise_seed=noise_seed), ctx.draw(img2, bg, noise_seed=noise_seed)]
    ft, fo = frames[t - 1], frames[2 - t]
    j = ft.index_of(orig.instance)
    expect_one(unmatched(ft, fo), j, "difference not unique")
    a, b = orig, new
    texts = {
        "added": f"The {b.describe(True)} appears in Image-2 but not in Image-1.",
        "removed": f"The {a.describe(True)} in Image-1 is missing from Image-2.",
        "color": f"At the same place, the {a.shape} is {a.color} in Image-1 and {b.color} in Image-2.",
        "shape": f"At the same place, Image-1 has a {a.color} {a.shape} and Image-2 a {b.color} {b.shape}.",
        "size": f"The {a.describe()} is {a.size} in Image-1 and {b.size} in Image-2.",
    }
    rel: dict[str, Any] = {"type": DIFFERENCE, "change": change, "images": [1, 2], "subject": ref(t, j)}
    if change not in ("added", "removed"):
        rel["object"] = ref(3 - t, fo.index_of(orig.instance))
    rel["text"] = texts[change]
    relations = [
        {
            "type": SAME_SCENE,
            "images": [1, 2],
            "text": "Image-1 and Image-2 show the same scene except for one change.",
        },
        rel,
    ]
    q = f"Compare these two images carefully and give me the coordinates of their difference in Image-{t}."
    return Built(frames, q, t, j, relations, {"change": change})


def build_view_diff(ctx: Ctx) -> Built:
    """Robust difference: Image-2 is Image-1 shifted by a few pixels, noised and slightly recoloured, with one
    real difference (an object added, recoloured or reshaped) to locate in Image-2."""
    S = ctx.S
    m = max(2, round(S * 0.05))
    while True:
        dx, dy = (int(v) for v in ctx.rng.integers(-m, m + 1, size=2))
        if abs(dx) + abs(dy) >= 2:
            break
    bounds = (max(0, -dx), max(0, -dy), S - max(0, dx), S - max(0, dy))
    objs = ctx.place(distinct_objs(ctx, ctx.n_distractors() + 2), bounds=bounds)
    moved = [o.moved(o.x0 + dx, o.y0 + dy) for o in objs]
    change = ctx.choice(("added", "color", "shape"))
    kinds = {o.kind for o in objs}
    if change == "added":
        new = ctx.place([ctx.new_obj(avoid_kinds=kinds)], fixed=moved)[0]
        img2 = [*moved, new]
    else:
        orig = ctx.choice(moved)
        if change == "color":
            new = replace(orig, color=ctx.choice([x for x in COLOR_NAMES if (orig.shape, x) not in kinds]))
        else:
            new = replace(orig, shape=ctx.choice([s for s in SHAPES if (s, orig.color) not in kinds]))
        img2 = [new if o is orig else o for o in moved]
    bg = ctx.background()
    f1 = ctx.draw(shuffled(ctx, objs), bg)
    noise2 = round(ctx.cfg.noise + float(ctx.rng.uniform(3.0, 7.0)), 3)
    f2 = ctx.draw(shuffled(ctx, img2), bg, noise=noise2, bg_shift=(dx, dy))
    gain = ctx.rng.uniform(0.93, 1.07, size=3)  # slight recolouring: per-channel gain and offset
    bias = ctx.rng.uniform(-6, 6, size=3)
    f2.image = np.clip(
        f2.image.astype(np.float32) * gain.astype(np.float32) + bias.astype(np.float32) + 0.5, 0, 255
    ).astype(np.uint8)
    j = f2.index_of(new.instance)
    expect_one(unmatched(f2, f1, (dx, dy)), j, "real difference not unique")
    diff_rel: dict[str, Any] = {"type": DIFFERENCE, "change": change, "images": [1, 2], "subject": ref(2, j)}
    if change == "added":
        diff_rel["text"] = f"The {new.describe(True)} in Image-2 has no counterpart in Image-1."
    else:  # the recoloured or reshaped object keeps its instance
        i1 = f1.index_of(new.instance)
        diff_rel["object"] = ref(1, i1)
        diff_rel["text"] = f"The {f1.objs[i1].describe()} of Image-1 is a {new.describe()} in Image-2."
    relations = [
        {
            "type": PERTURBATION,
            "images": [1, 2],
            "shift_px": [dx, dy],
            "text": f"Image-2 is Image-1 moved by ({dx}, {dy}) pixels, with noise and a slight colour change.",
        },
        diff_rel,
    ]
    q = (
        "Compare these two images carefully and give me the coordinates of their real difference in Image-2. "
        "Find it and locate it in Image-2."
    )
    meta = {
        "change": change,
        "shift_px": [dx, dy],
        "noise2": noise2,
        "gain": [round(float(g), 4) for g in gain],
        "bias": [round(float(b), 3) for b in bias],
    }
    return Built([f1, f2], q, 2, j, relations, meta)


# --- spontaneous: similarity -----------------------------------------------------------------------------


def build_common_object(ctx: Ctx) -> Built:
    """Common object: exactly one object (same shape, colour and size) appears in every image; other objects
    recur in some images but never in all. Locate the common object in the named image."""
    n = ctx.n_images
    target = ctx.new_obj()
    pool = distinct_objs(ctx, ctx.cfg.distractors[1] + 3, taken=[target])
    members: list[list[Obj]] = []
    for _ in range(n):
        k = min(len(pool), ctx.n_distractors(minimum=1))
        members.append([pool[int(i)] for i in ctx.rng.choice(len(pool), size=k, replace=False)])
    for p in pool:  # a distractor present in every image would be a second common object
        holders = [i for i in range(n) if p in members[i]]
        if len(holders) == n:
            drop = holders[int(ctx.rng.integers(n))]
            members[drop] = [o for o in members[drop] if o is not p]
    frames = [ctx.draw(shuffled(ctx, ctx.place([target, *m])), ctx.background()) for m in members]
    t = int(ctx.rng.integers(1, n + 1))
    j = frames[t - 1].index_of(target.instance)
    common = [
        k
        for k, o in enumerate(frames[t - 1].objs)
        if all(any(p.signature == o.signature for p in f.objs) for f in frames)
    ]
    expect_one(common, j, "common object not unique")
    occ = [ref(i + 1, f.index_of(target.instance)) for i, f in enumerate(frames)]
    relations = [
        {
            "type": COMMON_OBJECT,
            "images": list(range(1, n + 1)),
            "subject": ref(t, j),
            "occurrences": occ,
            "text": f"The {target.describe(True)} is the only object that appears in every image.",
        }
    ]
    q = f"These images share one object in common. Recognize and locate this object in Image-{t}."
    return Built(frames, q, t, j, relations, {})


# --- referential: visual ---------------------------------------------------------------------------------


def build_object_tracking(ctx: Ctx) -> Built:
    """Object tracking: frames of objects moving in straight lines. The target is given by its box in Image-1
    (in the question and in ``ref_boxes``); locate it in the named later frame."""
    S, F = ctx.S, ctx.n_images
    objs = distinct_objs(ctx, ctx.n_distractors(minimum=1) + 1)
    target = objs[0]
    vmax = 0.045 * S
    tracks: list[list[Obj]] = []
    boxes: list[list[PixelBox]] = []  # per placed track, nominal box per frame
    steps = np.arange(F)
    for k, o in enumerate(objs):
        d = o.diameter
        x0s = ctx.rng.integers(0, S - d + 1, size=100)
        y0s = ctx.rng.integers(0, S - d + 1, size=100)
        vs = ctx.rng.uniform(-vmax, vmax, size=(100, 2))
        for x0, y0, (vx, vy) in zip(x0s, y0s, vs, strict=True):
            if k == 0 and np.hypot(vx, vy) < 0.02 * S:
                continue
            px = np.rint(x0 + steps * vx).astype(int)
            py = np.rint(y0 + steps * vy).astype(int)
            if px.min() < 0 or py.min() < 0 or px.max() + d > S or py.max() + d > S:
                continue
            track_boxes = [(x, y, x + d, y + d) for x, y in zip(px.tolist(), py.tolist(), strict=True)]
            if all(boxes_apart(b, q[f], ctx.gap) for q in boxes for f, b in enumerate(track_boxes)):
                boxes.append(track_boxes)
                tracks.append([o.moved(b[0], b[1]) for b in track_boxes])
                break
        else:
            raise Reject("could not place track")
    bg = ctx.background()
    frames = [ctx.draw(shuffled(ctx, [tr[f] for tr in tracks]), bg) for f in range(F)]
    t = int(ctx.rng.integers(2, F + 1))
    i1 = frames[0].index_of(target.instance)
    ref_box = frames[0].boxes[i1]
    j = frames[t - 1].index_of(target.instance)
    at_ref = [k for k, b in enumerate(frames[0].boxes) if iou(b, ref_box) > 0.5]
    expect_one(at_ref, i1, "reference box ambiguous")
    same = [k for k, o in enumerate(frames[t - 1].objs) if o.signature == target.signature]
    expect_one(same, j, "tracked object not unique")
    occ = [ref(f + 1, fr.index_of(target.instance)) for f, fr in enumerate(frames)]
    relations = [
        {
            "type": SAME_OBJECT,
            "images": list(range(1, F + 1)),
            "subject": ref(t, j),
            "object": ref(1, i1),
            "occurrences": occ,
            "text": f"The {target.describe()} marked in Image-1 moves across the frames; in Image-{t} it is at a new place.",
        }
    ]
    q = (
        "These are a sequence of images containing moving objects. For the object in Image-1 marked by the box "
        f"{qwen_box(ref_box, S)}, please locate it in Image-{t}."
    )
    return Built(frames, q, t, j, relations, {}, ref_boxes=[(1, ref_box)])


def build_multi_view(ctx: Ctx) -> Built:
    """Multi-view: the images show one scene from different viewpoints (zoom, horizontal mirror, pan); objects
    may leave the view. The target is given by its box in Image-1; locate it in the named image."""
    S, n = ctx.S, ctx.n_images
    world = ctx.place(distinct_objs(ctx, ctx.n_distractors(minimum=1) + 2))
    target = ctx.choice(world)
    t = int(ctx.rng.integers(2, n + 1))
    base = ctx.background()
    frames: list[Frame] = []
    views: list[dict[str, Any]] = []
    for k in range(n):
        if k == 0:
            zoom, mirror, tx, ty = float(ctx.rng.uniform(0.95, 1.05)), False, 0.0, 0.0
        else:
            zoom = float(ctx.rng.uniform(0.8, 1.2))
            mirror = bool(ctx.rng.integers(2))
            tx, ty = (float(v) for v in ctx.rng.uniform(-0.12 * S, 0.12 * S, size=2))
        visible = []
        for o in world:
            cx, cy = o.center
            x = zoom * (cx - S / 2) + S / 2 + tx
            y = zoom * (cy - S / 2) + S / 2 + ty
            if mirror:
                x = S - x
            d = max(7, round(o.diameter * zoom))
            p = replace(o, diameter=d, x0=round(x - d / 2), y0=round(y - d / 2))
            if min(p.nominal()) >= 0 and max(p.nominal()) <= S:
                visible.append(p)
        if len(visible) < 2 or (k in (0, t - 1) and target.instance not in {p.instance for p in visible}):
            raise Reject("view lost the target")
        if not all(
            boxes_apart(a.nominal(), b.nominal(), 1) for i, a in enumerate(visible) for b in visible[i + 1 :]
        ):
            raise Reject("objects touch in a view")
        bg = Background(base.rgb, base.amplitude, round(base.angle + float(ctx.rng.uniform(-0.6, 0.6)), 4))
        frames.append(ctx.draw(shuffled(ctx, visible), bg))
        views.append({"zoom": round(zoom, 4), "mirror": mirror, "pan_px": [round(tx, 2), round(ty, 2)]})
    i1 = frames[0].index_of(target.instance)
    j = frames[t - 1].index_of(target.instance)
    ref_box = frames[0].boxes[i1]
    expect_one([k for k, b in enumerate(frames[0].boxes) if iou(b, ref_box) > 0.5], i1, "reference ambiguous")
    expect_one(
        [k for k, o in enumerate(frames[t - 1].objs) if o.signature == target.signature], j, "view target"
    )
    relations = [
        {
            "type": SAME_SCENE,
            "images": [1, k],
            "view": v,
            "text": f"Image-{k} shows the scene of Image-1 {'mirrored, ' if v['mirror'] else ''}zoomed x{v['zoom']:.2f} and panned.",
        }
        for k, v in enumerate(views[1:], start=2)
    ]
    relations.append(
        {
            "type": SAME_OBJECT,
            "images": [1, t],
            "subject": ref(t, j),
            "object": ref(1, i1),
            "text": f"The {target.describe()} marked in Image-1 is the {target.describe()} in Image-{t}.",
        }
    )
    q = (
        f"These images show one scene from different views and share the object marked by the box "
        f"{qwen_box(ref_box, S)} in Image-1. Recognize and locate this object in Image-{t}."
    )
    return Built(frames, q, t, j, relations, {"views": views}, ref_boxes=[(1, ref_box)])


def build_region(ctx: Ctx) -> Built:
    """Region locating: Image-1 is a source image, the others are crops of it (zoomed to full size). Locate the
    region shown in the named crop within the source; the answer box is that crop's window."""
    S, n = ctx.S, ctx.n_images
    objs = ctx.place(distinct_objs(ctx, ctx.n_distractors(minimum=1) + 2))
    base = ctx.background()
    bg = Background(base.rgb, round(float(ctx.rng.uniform(22, 40)), 3), base.angle)
    src = ctx.draw(shuffled(ctx, objs), bg)
    windows: list[PixelBox] = []
    lo, hi = round(0.35 * S), round(0.6 * S)
    anchors = [int(i) for i in ctx.rng.permutation(len(src.objs))]
    for a in anchors:
        if len(windows) == n - 1:
            break
        o = src.objs[a]
        side = int(ctx.rng.integers(max(lo, o.diameter + 4), max(lo, o.diameter + 4, hi) + 1))
        if side > S:
            continue
        ox1, oy1 = o.x0 + o.diameter, o.y0 + o.diameter
        x_lo, x_hi = max(0, ox1 - side), min(o.x0, S - side)
        y_lo, y_hi = max(0, oy1 - side), min(o.y0, S - side)
        if x_lo > x_hi or y_lo > y_hi:
            continue
        x = int(ctx.rng.integers(x_lo, x_hi + 1))
        y = int(ctx.rng.integers(y_lo, y_hi + 1))
        w = (x, y, x + side, y + side)
        if all(iou(w, v) < 0.25 for v in windows):
            windows.append(w)
    if len(windows) < n - 1:
        raise Reject("could not cut distinct regions")
    frames = [src]
    full_masks = [m.full(S, S) for m in src.masks]
    for w in windows:
        crop = zoom_window(src.image, w, S)
        objs_c, masks_c, boxes_c, extra_c = [], [], [], []
        for o, fm in zip(src.objs, full_masks, strict=True):
            cm = zoom_window(fm, w, S)
            b = tight_box(cm)
            if b is None:
                continue
            objs_c.append(o)
            masks_c.append(Mask(cm, 0, 0))
            boxes_c.append(b)
            nb = o.nominal()
            extra_c.append(
                {"truncated": not (nb[0] >= w[0] and nb[1] >= w[1] and nb[2] <= w[2] and nb[3] <= w[3])}
            )
        frames.append(Frame(crop, objs_c, masks_c, boxes_c, extra_c))
    k = int(ctx.rng.integers(2, n + 1))
    relations = [
        {
            "type": CROP_OF,
            "images": [i + 2, 1],
            "box": list(normalize_box(w, S, S)),
            "text": f"Image-{i + 2} is a zoomed-in region of Image-1.",
        }
        for i, w in enumerate(windows)
    ]
    q = (
        f"You are given a source image (Image-1) followed by its several regions (Image-2 to Image-{n}). "
        f"Please locate the region shown in Image-{k} in the source image."
    )
    return Built(frames, q, 1, None, relations, {"region_image": k}, target_box_px=windows[k - 2])


def build_refer_grounding(ctx: Ctx) -> Built:
    """Refer grounding: Image-1 shows one object alone; find the same object (shape, colour and size) among
    the scenes of the other images. Look-alikes differ in one attribute."""
    n = ctx.n_images
    t = int(ctx.rng.integers(2, n + 1))
    target = ctx.new_obj()
    frames = [ctx.draw(ctx.place([target]), ctx.background())]
    for k in range(2, n + 1):
        objs: list[Obj] = [target] if k == t else []
        if ctx.rng.random() < 0.8:  # look-alike: same shape or colour (or, elsewhere, a different size)
            opts = ["shape", "color"] + (["size"] if k != t else [])
            which = ctx.choice(opts)
            if which == "shape":
                objs.append(ctx.new_obj(shape=target.shape, avoid_colors=[target.color]))
            elif which == "color":
                objs.append(ctx.new_obj(color=target.color, avoid_shapes=[target.shape]))
            else:
                objs.append(other_size(ctx, target))
        need = ctx.n_distractors(minimum=1)
        objs += distinct_objs(ctx, max(0, need - len(objs) + (k == t)), taken=objs, avoid_kinds=[target.kind])
        frames.append(ctx.draw(shuffled(ctx, ctx.place(objs)), ctx.background()))
    j = frames[t - 1].index_of(target.instance)
    if find_all(frames, lambda o: o.signature == target.signature, skip=1) != [(t, j)]:
        raise Reject("referred object not unique")
    relations = [
        {
            "type": SAME_OBJECT,
            "images": [1, t],
            "subject": ref(t, j),
            "object": ref(1, 0),
            "text": f"The {target.describe(True)} shown alone in Image-1 appears in Image-{t}.",
        }
    ]
    if n == 2:
        q = "Find and locate where the object in Image-1 appears in Image-2."
    else:
        q = f"Find and locate where the object in Image-1 appears in the other images (Image-2 to Image-{n})."
    return Built(frames, q, t, j, relations, {"target_named": n == 2})


# --- referential: textual / visual+textual -----------------------------------------------------------------


def _description(attrs: tuple[str, ...], o: Obj) -> str:
    """'the small red star', 'the red object', 'the star', ... naming ``attrs`` of ``o``."""
    words = [getattr(o, a) for a in ("size", "color") if a in attrs]
    return " ".join(["the", *words, o.shape if "shape" in attrs else "object"])


def build_group_grounding(ctx: Ctx) -> Built:
    """Group grounding: a text description picks one object among all the images; the question does not say
    which image holds it. Look-alikes differ in one described attribute."""
    n = ctx.n_images
    t = int(ctx.rng.integers(1, n + 1))
    target = ctx.new_obj()
    per_image: list[list[Obj]] = [[target] if k == t else [] for k in range(1, n + 1)]
    for _ in range(int(ctx.rng.integers(1, n + 1))):  # look-alikes
        k = int(ctx.rng.integers(1, n + 1))
        which = ctx.choice(("shape", "color") if k == t else ("shape", "color", "size"))
        taken = [o.kind for o in per_image[k - 1]] + [target.kind]
        if which == "size" and any(o.kind == target.kind for o in per_image[k - 1]):
            continue
        if which == "shape":
            o = ctx.new_obj(color=target.color, size=target.size, avoid_kinds=taken)
        elif which == "color":
            o = ctx.new_obj(shape=target.shape, size=target.size, avoid_kinds=taken)
        else:
            o = other_size(ctx, target)
        per_image[k - 1].append(o)
    frames = []
    for objs in per_image:
        objs = objs + distinct_objs(
            ctx, max(0, ctx.n_distractors(minimum=1) - len(objs) + 1), taken=objs, avoid_kinds=[target.kind]
        )
        frames.append(ctx.draw(shuffled(ctx, ctx.place(objs)), ctx.background()))
    subsets: list[tuple[str, ...]] = [
        ("size", "color", "shape"),
        ("color", "shape"),
        ("size", "shape"),
        ("size", "color"),
        ("shape",),
        ("color",),
    ]
    j = frames[t - 1].index_of(target.instance)
    for i in ctx.rng.permutation(len(subsets)):
        chosen = subsets[int(i)]
        if find_all(frames, partial(alike, target, attrs=chosen)) == [(t, j)]:
            break
    else:
        raise Reject("no unique description")
    desc = _description(chosen, target)
    q = ctx.choice(GROUP_TEMPLATES).format(ref=f"<|object_ref_start|>{desc}<|object_ref_end|>")
    relations = [
        {
            "type": DESCRIBED_BY,
            "images": [t],
            "subject": ref(t, j),
            "attributes": list(chosen),
            "text": f"Only Image-{t} holds {desc}.",
        }
    ]
    meta = {"description": desc, "described_attributes": list(chosen), "target_named": False}
    return Built(frames, q, t, j, relations, meta)


def build_reasoning(ctx: Ctx) -> Built:
    """Reasoning: Image-1 shows one object; in the named image find the one object that shares its colour
    (or its shape) — the question does not say which colour or shape, so Image-1 must be looked at."""
    n = ctx.n_images
    t = int(ctx.rng.integers(2, n + 1))
    attr = ctx.choice(("color", "shape"))
    other = "shape" if attr == "color" else "color"
    r = ctx.new_obj()
    frames = [ctx.draw(ctx.place([r]), ctx.background())]
    target = None
    for k in range(2, n + 1):
        if k == t:
            # the answer: same `attr`, different `other`; hard negatives: same `other`, different `attr`
            target = ctx.new_obj(**{attr: getattr(r, attr)}, **{f"avoid_{other}s": [getattr(r, other)]})
            objs = [target]
            if ctx.rng.random() < 0.7:
                objs.append(
                    ctx.new_obj(**{other: getattr(r, other)}, **{f"avoid_{attr}s": [getattr(r, attr)]})
                )
            need = ctx.n_distractors(minimum=1)
            objs += distinct_objs(
                ctx, max(0, need - len(objs) + 1), taken=objs, **{f"avoid_{attr}s": [getattr(r, attr)]}
            )
        else:
            objs = distinct_objs(ctx, ctx.n_distractors(minimum=1) + 1)
        frames.append(ctx.draw(shuffled(ctx, ctx.place(objs)), ctx.background()))
    assert target is not None
    j = frames[t - 1].index_of(target.instance)
    ft = frames[t - 1]
    expect_one(
        [i for i, o in enumerate(ft.objs) if getattr(o, attr) == getattr(r, attr)], j, "shared attribute"
    )
    if any(o.kind == r.kind for o in ft.objs):
        raise Reject("identical object in the target image")
    word = ATTRIBUTE_WORDS[attr]
    relations = [same_attribute(attr, target, (t, j), r, (1, 0))]
    q = f"Which object in Image-{t} has the same {word} as the object in Image-1? Find it and locate it in Image-{t}."
    return Built(frames, q, t, j, relations, {"decisive_attribute": attr})


def build_correspondence(ctx: Ctx) -> Built:
    """Correspondence: a red box surrounds one object in Image-1; in Image-2 find the corresponding
    object — the one with the same shape (its colour differs; same-colour look-alikes have other shapes)."""
    S = ctx.S
    lw = max(1, round(S / 110))
    pad = 2 + lw  # a 2 px margin between the object's pixels and the red box, then the box
    a = ctx.place([ctx.new_obj()], bounds=(pad, pad, S - pad, S - pad))[0]
    others = ctx.place(
        distinct_objs(ctx, ctx.n_distractors(minimum=1), taken=[a]), fixed=[a], fixed_gap=ctx.gap + pad + 1
    )
    f1 = ctx.draw(shuffled(ctx, [a, *others]), ctx.background())
    i1 = f1.index_of(a.instance)
    x1, y1, x2, y2 = f1.boxes[i1]
    marked = (x1 - pad, y1 - pad, x2 + pad, y2 + pad)  # outer edge of the drawn rectangle, half-open
    img = f1.image
    red = np.array([255, 0, 0], dtype=np.uint8)
    img[marked[1] : marked[1] + lw, marked[0] : marked[2]] = red
    img[marked[3] - lw : marked[3], marked[0] : marked[2]] = red
    img[marked[1] : marked[3], marked[0] : marked[0] + lw] = red
    img[marked[1] : marked[3], marked[2] - lw : marked[2]] = red
    target = ctx.new_obj(shape=a.shape, avoid_colors=[a.color])
    objs2 = [target]
    n_d = ctx.n_distractors(minimum=1)
    if n_d:
        objs2.append(ctx.new_obj(color=a.color, avoid_shapes=[a.shape]))
    objs2 += distinct_objs(ctx, max(0, n_d - 1), taken=objs2, avoid_shapes=[a.shape])
    f2 = ctx.draw(shuffled(ctx, ctx.place(objs2)), ctx.background())
    j = f2.index_of(target.instance)
    expect_one([i for i, o in enumerate(f2.objs) if o.shape == a.shape], j, "corresponding object")
    relations = [
        {
            "type": CORRESPONDENCE,
            "attribute": "shape",
            "value": a.shape,
            "images": [2, 1],
            "subject": ref(2, j),
            "object": ref(1, i1),
            "text": f"The {a.describe()} in the red box of Image-1 corresponds to the {target.describe()} in Image-2 (both are {a.shape}s).",
        }
    ]
    q = (
        "You are now presented with two images. For the object marked by the red bounding box in Image-1, "
        "identify and locate the corresponding object in Image-2 that serves a similar function or shares a "
        "similar meaning (the same kind of shape, whatever its colour)."
    )
    return Built([f1, f2], q, 2, j, relations, {"marked_box": list(normalize_box(marked, S, S))})


# --- cross-image relations (MIRG-RL) ----------------------------------------------------------------------


def _in_zone(rel: str, b: PixelBox, a: PixelBox, margin: int) -> bool:
    """Generous version of :func:`spatial` used to keep distractors clearly out of the relation's zone."""
    acx, acy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    bcx, bcy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    near_x = min(a[2], b[2]) + margin > max(a[0], b[0])
    near_y = min(a[3], b[3]) + margin > max(a[1], b[1])
    return {
        "below": bcy > acy and near_x,
        "above": bcy < acy and near_x,
        "left": bcx < acx and near_y,
        "right": bcx > acx and near_y,
    }[rel]


def build_cross_relation(ctx: Ctx) -> Built:
    """Cross-image relation: the target is defined by a chain that spans images — a spatial relation inside
    the anchor image picks a reference object, whose shape (or colour) then picks the target in another image.
    Half of the questions name the target image, the others say only 'an image other than Image-j'."""
    S, n = ctx.S, ctx.n_images
    rel = ctx.choice(("above", "below", "left", "right"))
    anchor_img = int(ctx.rng.integers(1, n + 1))
    carried = ctx.choice(("shape", "color"))
    other = "color" if carried == "shape" else "shape"
    named = bool(ctx.rng.integers(2)) or n == 2
    others = [k for k in range(1, n + 1) if k != anchor_img]
    t = ctx.choice(others)

    # anchor image: anchor A, related object B (rel of A), distractors clear of the zone
    A = ctx.new_obj()
    B = ctx.new_obj(avoid_kinds=[A.kind])
    half = round(0.5 * S)
    bounds = {
        "below": (0, 0, S, half),
        "above": (0, S - half, S, S),
        "left": (S - half, 0, S, S),
        "right": (0, 0, half, S),
    }[rel]
    A = ctx.place([A], bounds=bounds)[0]
    acx, acy = A.center
    an = A.nominal()

    def b_ok(c: Obj) -> bool:
        cn, (cx, cy) = c.nominal(), c.center
        if rel in ("below", "above"):
            beyond = cn[1] >= an[3] + ctx.gap if rel == "below" else cn[3] + ctx.gap <= an[1]
            return beyond and abs(cx - acx) <= 0.2 * A.diameter
        beyond = cn[2] + ctx.gap <= an[0] if rel == "left" else cn[0] >= an[2] + ctx.gap
        return beyond and abs(cy - acy) <= 0.2 * A.diameter

    B = ctx.place([B], fixed=[A], ok=b_ok, tries=150)[0]
    margin = round(0.06 * S)
    dists = distinct_objs(ctx, ctx.n_distractors(), taken=[A, B])
    dists = ctx.place(dists, fixed=[A, B], ok=lambda c: not _in_zone(rel, c.nominal(), an, margin))
    fa = ctx.draw(shuffled(ctx, [A, B, *dists]), ctx.background())
    ia, ib = fa.index_of(A.instance), fa.index_of(B.instance)
    expect_one(
        [k for k, b in enumerate(fa.boxes) if k != ia and spatial(rel, b, fa.boxes[ia])], ib, "relation"
    )
    # how to name the anchor: shape or colour (in random order) when unique in its image, else both (A's kind is)
    forms = [(("shape",), ("color",))[int(k)] for k in ctx.rng.permutation(2)]
    unique = [f for f in forms if sum(alike(o, A, f) for o in fa.objs) == 1]
    anchor_desc = _description([*unique, ("color", "shape")][0], A)
    value = getattr(B, carried)

    # target and the other images
    filt_value = None
    if named:
        target = ctx.new_obj(**{carried: value}, avoid_kinds=[B.kind])
    else:
        filt_value = getattr(ctx.new_obj(avoid_kinds=[B.kind], **{carried: value}), other)
        target = ctx.new_obj(**{carried: value, other: filt_value})

    def matches(o: Obj) -> bool:
        return getattr(o, carried) == value and (named or getattr(o, other) == filt_value)

    frames: list[Frame | None] = [None] * n
    frames[anchor_img - 1] = fa
    for k in others:
        objs = [target] if k == t else []
        # look-alike sharing the carried value (a trap in other images) or the filter
        if ctx.rng.random() < 0.7:
            if named and k != t:
                objs.append(ctx.new_obj(**{carried: value}))
            elif not named:
                if ctx.rng.random() < 0.5 or k == t:
                    objs.append(ctx.new_obj(**{carried: value}, **{f"avoid_{other}s": [filt_value]}))
                else:
                    objs.append(ctx.new_obj(**{other: filt_value}, **{f"avoid_{carried}s": [value]}))
        avoid = {f"avoid_{carried}s": [value]} if not named or k == t else {}
        objs += distinct_objs(ctx, max(0, ctx.n_distractors(minimum=1) - len(objs) + 1), taken=objs, **avoid)
        if not named:
            objs = [o for o in objs if o is target or not matches(o)]
        frames[k - 1] = ctx.draw(shuffled(ctx, ctx.place(objs)), ctx.background())
    done = [f for f in frames if f is not None]
    j = done[t - 1].index_of(target.instance)
    hits = [(k, i) for k, i in find_all(done, matches, skip=anchor_img) if not named or k == t]
    if named:
        expect_one([i for _, i in hits], j, "carried attribute in target image")
    elif hits != [(t, j)]:
        raise Reject("target not unique across images")

    word = ATTRIBUTE_WORDS[carried]
    rel_words = SPATIAL_WORDS[rel]
    clue = f"the same {word} as the object {rel_words} {anchor_desc} in Image-{anchor_img}"
    if named:
        q = f"In Image-{t}, find the object that has {clue}."
    else:
        thing = f"{filt_value} object" if other == "color" else filt_value
        q = f"Find the {thing}, in an image other than Image-{anchor_img}, that has {clue}."
    relations = [
        {
            "type": SPATIAL,
            "relation": rel,
            "images": [anchor_img],
            "subject": ref(anchor_img, ib),
            "object": ref(anchor_img, ia),
            "text": f"In Image-{anchor_img}, the {B.describe()} is {rel_words} the {A.describe()}.",
        },
        same_attribute(carried, target, (t, j), B, (anchor_img, ib)),
    ]
    meta = {
        "variant": "named" if named else "unnamed",
        "relation": rel,
        "anchor_image": anchor_img,
        "carried_attribute": carried,
        "filter": {other: filt_value} if not named else {},
        "hops": 2,
        "target_named": named,
    }
    return Built(done, q, t, j, relations, meta)


BUILDERS: dict[str, Callable[[Ctx], Built]] = {
    "diff": build_diff,
    "view_diff": build_view_diff,
    "common_object": build_common_object,
    "object_tracking": build_object_tracking,
    "multi_view": build_multi_view,
    "region": build_region,
    "refer_grounding": build_refer_grounding,
    "group_grounding": build_group_grounding,
    "reasoning": build_reasoning,
    "correspondence": build_correspondence,
    "cross_relation": build_cross_relation,
}

SYNTH_TASKS: tuple[str, ...] = tuple(BUILDERS)
