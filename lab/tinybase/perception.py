"""Perception samples: single- and multi-image referring, listing and counting questions about scenes drawn
with MIG-Synth's scene model (objects, placement, renderer). Every sample is a pure function of its random
stream (:func:`perception_rng`), so the same seed gives the same scenes, questions and answers.

* ``refer``: referring-expression grounding ("the small blue triangle" -> box). The first user turn is the
  mirg prompt (:func:`mirg.prompting.user_content`) or a short one, and the completion is the ``qwen2_5_vl``
  dialect (``<think>..</think>\n<answer>{"image": 1, "bbox_2d": [x1, y1, x2, y2]}</answer>``), so SFT, RL and
  evaluation read it unchanged. Further turns ask about other objects of the same image.
* ``list``: every object with its box (``<answer>[{"label": "small blue triangle", "bbox_2d": [...]}, ...]``,
  objects in reading order: by top edge, then left edge).
* ``count``: how many objects (of a colour or shape, or all) -> ``<answer>3</answer>``.

:func:`make_multi_sample` puts 2-3 scenes in one prompt: the referred object is in one of them, its expression
unique across all of them, the question names its image one time in three, and the answer is
``{"image": k, "bbox_2d": [...]}`` in pixels of image k.

The tiny base's pretraining loop (:mod:`lab.tinybase.loop`) trains on them. Coordinates are pixels of the rendered image, a multiple
of 28 px within the tiny processor's pixel range, so the processor does not resize it. Boxes are MIG-Synth's
tight half-open boxes of the drawn pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mirg.answers import get_dialect
from mirg.prompting import user_content
from mirg.synth.scene import Ctx, Reject, SynthConfig

PERCEPTION_TASKS = ("refer", "list", "count")
# Attribute subsets a referring expression may use; a question draws one of those that identify its object.
_EXPR_KEYS = (("shape",), ("color",), ("color", "shape"), ("size", "shape"), ("size", "color"),
              ("size", "color", "shape"))  # fmt: skip
# "shape", "color", "color+shape", ... (as the metrics name them)
EXPR_NAMES = tuple("+".join(k) for k in _EXPR_KEYS)
UNIFORM_EXPR = (1.0,) * len(_EXPR_KEYS)
DIALECT = "qwen2_5_vl"


@dataclass(frozen=True)
class Stage:
    """One curriculum stage: objects per image (min, max) and the task mixture (weights per task)."""

    objects: tuple[int, int]
    mix: tuple[float, float, float]  # refer, list, count


@dataclass(frozen=True)
class DataConfig:
    """What the generator draws. ``image_sizes`` (px, multiples of 28) with ``size_weights``; ``object_size``
    as in :class:`~mirg.synth.scene.SynthConfig`; ``stages`` of the curriculum with the fraction of training
    at which each one starts (``stage_starts``, first is 0); ``refer_turns`` (lo, hi): a ``refer`` sample asks
    about ``lo`` to ``min(hi, objects)`` distinct objects of its image, uniformly (fewer when an object has no
    unique expression). ``expr_weights`` (per :data:`EXPR_NAMES`): how a referring question picks among the
    attribute subsets that identify its object (uniformly by default); ``min_objects``: training stages draw at
    least this many objects per image (:meth:`stage_at`)."""

    image_sizes: tuple[int, ...] = (112,)
    size_weights: tuple[float, ...] = (1.0,)
    mirg_prompt: float = 0.3  # fraction of refer samples asked with the full mirg prompt (else the short one)
    object_size: tuple[float, float] = (0.13, 0.27)
    stages: tuple[Stage, ...] = (
        Stage((1, 2), (0.7, 0.2, 0.1)),
        Stage((1, 4), (0.65, 0.25, 0.1)),
        Stage((1, 5), (0.65, 0.25, 0.1)),
    )
    stage_starts: tuple[float, ...] = (0.0, 0.1, 0.3)
    refer_turns: tuple[int, int] = (1, 3)
    multi_image: float = 0.0  # fraction of refer batches with several images per sample
    multi_images: tuple[int, int] = (2, 3)  # images per multi-image sample (lo, hi), uniformly
    expr_weights: tuple[float, ...] = UNIFORM_EXPR  # per attribute subset (EXPR_NAMES) when several fit
    min_objects: int = 1  # objects per image in training stages at least this many

    def capped(self, max_objects: int | None) -> DataConfig:
        """The same curriculum with at most ``max_objects`` objects per image (None: unchanged)."""
        if max_objects is None:
            return self
        stages = tuple(
            replace(st, objects=(min(st.objects[0], max_objects), min(st.objects[1], max_objects)))
            for st in self.stages
        )
        return replace(self, stages=stages)

    def stage_at(self, progress: float) -> Stage:
        """The stage for a training progress in [0, 1], with at least ``min_objects`` objects per image."""
        k = 0
        for i, start in enumerate(self.stage_starts):
            if progress >= start:
                k = i
        lo, hi = self.stages[k].objects
        return replace(self.stages[k], objects=(max(lo, self.min_objects), max(hi, self.min_objects)))


@dataclass
class PerceptionSample:
    """One sample: the image (H, W, 3 uint8) and one or more (user content parts, completion) turns about it,
    plus annotations (``boxes``: pixel boxes of all objects; ``targets``: index of the referred object per
    turn, for ``refer``). Extra turns reuse the encoded image (cheaper supervision on CPU); evaluation and the
    later stages use the first turn only."""

    task: str
    image: np.ndarray
    turns: list[tuple[list[dict[str, Any]], str]]
    boxes: list[tuple[int, int, int, int]]
    labels: list[str]
    targets: list[int] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    context: list[PerceptionSample] = field(default_factory=list)
    place: int = 1

    def scenes(self) -> list[PerceptionSample]:
        """One single-image sample per image of the prompt, in order (this one at ``place``)."""
        return [*self.context[: self.place - 1], self, *self.context[self.place - 1 :]]

    @property
    def images(self) -> list[np.ndarray]:
        """The prompt's images in order (H, W, 3 uint8)."""
        return [s.image for s in self.scenes()]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels (equal to the processor-resized size)."""
        return self.image.shape[1], self.image.shape[0]

    @property
    def completion(self) -> str:
        return self.turns[0][1]

    def messages(self, with_completion: bool = True, all_turns: bool = True) -> list[dict[str, Any]]:
        """Chat messages: every turn (training) or the first user turn only (``with_completion=False``)."""
        msgs: list[dict[str, Any]] = []
        for content, completion in self.turns:
            msgs.append({"role": "user", "content": content})
            if not with_completion:
                break
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": completion}]})
            if not all_turns:
                break
        return msgs


def _box_text(b: tuple[int, int, int, int]) -> str:
    return f"[{b[0]}, {b[1]}, {b[2]}, {b[3]}]"


def _pick_keys(rng: np.random.Generator, options: list[tuple[str, ...]], cfg: DataConfig) -> tuple[str, ...]:
    """One of the attribute subsets that identify the object: uniformly (the default; the draw every earlier run
    made, so their data is unchanged) or in proportion to ``cfg.expr_weights``."""
    if len(set(cfg.expr_weights)) == 1:
        return options[int(rng.integers(len(options)))]
    w = np.asarray([cfg.expr_weights[_EXPR_KEYS.index(k)] for k in options], dtype=float)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


def _turn_count(rng: np.random.Generator, cfg: DataConfig, objects: int) -> int:
    """Questions for a sample of ``objects`` objects: ``cfg.refer_turns`` (lo, hi) capped at the objects, uniformly."""
    most = min(cfg.refer_turns[1], objects)
    least = min(cfg.refer_turns[0], most)
    return least + int(rng.integers(most - least + 1))


def expression(obj: Any, keys: tuple[str, ...]) -> str:
    """'the small blue triangle', 'the blue object', 'the triangle' for an Obj and attribute keys."""
    words = [getattr(obj, k) for k in ("size", "color") if k in keys]
    words.append(obj.shape if "shape" in keys else "object")
    return "the " + " ".join(words)


def _unique_keys(objs: list[Any], t: int) -> list[tuple[str, ...]]:
    target = objs[t]
    out = []
    for keys in _EXPR_KEYS:
        if all(any(getattr(o, k) != getattr(target, k) for k in keys) for i, o in enumerate(objs) if i != t):
            out.append(keys)
    return out


REFER_TEMPLATES = (
    "Locate {e}.",
    "Where is {e}? Locate it.",
    "Find {e} in the image.",
    "Which object is {e}?",
)
LIST_QUESTION = "List every object in the image with its box."
COUNT_TEMPLATES = ("How many objects are in the image?", "How many {c} objects are in the image?",
                   "How many {s}s are in the image?")  # fmt: skip


def short_content(question: str, images: int = 1) -> list[dict[str, Any]]:
    """The short user turn: ``Image-1: <image>\n[Image-2: <image>\n...]<question>`` (no instruction suffix)."""
    parts: list[dict[str, Any]] = []
    for k in range(1, images + 1):
        parts += [{"type": "text", "text": f"{chr(10) if k > 1 else ''}Image-{k}: "}, {"type": "image"}]
    return [*parts, {"type": "text", "text": "\n" + question}]


def _image_size(rng: np.random.Generator, cfg: DataConfig) -> int:
    return int(
        rng.choice(np.asarray(cfg.image_sizes), p=np.asarray(cfg.size_weights) / sum(cfg.size_weights))
    )


def _scene(
    rng: np.random.Generator, cfg: DataConfig, n_objects: int, size: int | None = None
) -> tuple[Any, list[Any]]:
    size = _image_size(rng, cfg) if size is None else size
    ctx = Ctx(rng, SynthConfig(image_size=size, object_size=cfg.object_size), 1)
    for _ in range(50):
        try:
            objs = [ctx.new_obj() for _ in range(n_objects)]
            placed = ctx.place(objs)
            frame = ctx.draw(placed, ctx.background(textured=bool(rng.random() < 0.7)))
            return frame, placed
        except Reject:
            continue
    raise RuntimeError("could not build a scene")  # pragma: no cover (placement always fits for <= 6 objects)


def make_sample(
    rng: np.random.Generator, cfg: DataConfig, stage: Stage, task: str | None = None
) -> PerceptionSample:
    """Draw one perception sample of ``task`` (or one drawn from the stage's mixture)."""
    if task is None:
        task = PERCEPTION_TASKS[
            int(rng.choice(len(PERCEPTION_TASKS), p=np.asarray(stage.mix) / sum(stage.mix)))
        ]
    n = int(rng.integers(stage.objects[0], stage.objects[1] + 1))
    while True:
        frame, objs = _scene(rng, cfg, n)
        boxes = [tuple(int(v) for v in b) for b in frame.boxes]
        labels = [f"{o.size} {o.color} {o.shape}" for o in objs]
        if task != "refer":
            break
        t = int(rng.integers(len(objs)))
        options = _unique_keys(objs, t)
        if options:
            break
    dialect = get_dialect(DIALECT)
    if task == "refer":
        turns, targets, exprs = [], [], []
        n_turns = _turn_count(rng, cfg, len(objs))
        order = [t] + [int(i) for i in rng.permutation(len(objs)) if i != t]
        for k in order:
            options = _unique_keys(objs, k)
            if not options:
                continue
            expr = expression(objs[k], _pick_keys(rng, options, cfg))
            question = REFER_TEMPLATES[int(rng.integers(len(REFER_TEMPLATES)))].format(e=expr)
            content = (
                user_content(1, question, DIALECT) if not turns and rng.random() < cfg.mirg_prompt else None
            )
            if content is None:
                content = short_content(question) if not turns else [{"type": "text", "text": question}]
            turns.append((content, dialect.render_completion(f"Image-1 shows {expr}.", 1, boxes[k])))
            targets.append(k)
            exprs.append(expr)
            if len(turns) == n_turns:
                break
        return PerceptionSample(task, frame.image, turns, boxes, labels, targets, {"expressions": exprs})
    if task == "list":
        order = sorted(range(len(objs)), key=lambda i: (boxes[i][1], boxes[i][0]))
        items = ", ".join(f'{{"label": "{labels[i]}", "bbox_2d": {_box_text(boxes[i])}}}' for i in order)
        content = short_content(LIST_QUESTION)
        return PerceptionSample(task, frame.image, [(content, f"<answer>[{items}]</answer>")], boxes, labels)
    kind = int(rng.integers(3))
    if kind == 0:
        question, count = COUNT_TEMPLATES[0], len(objs)
    elif kind == 1:
        c = (
            objs[int(rng.integers(len(objs)))].color
            if rng.random() < 0.8
            else str(rng.choice(["red", "blue"]))
        )
        question, count = COUNT_TEMPLATES[1].format(c=c), sum(o.color == c for o in objs)
    else:
        s = objs[int(rng.integers(len(objs)))].shape
        question, count = COUNT_TEMPLATES[2].format(s=s), sum(o.shape == s for o in objs)
    content = short_content(question)
    return PerceptionSample(task, frame.image, [(content, f"<answer>{count}</answer>")], boxes, labels, [],
                            {"count": count})  # fmt: skip


MULTI_TEMPLATES = ("Locate {e} in Image-{k}.", "Locate {e}.", "Which image shows {e}? Locate it.")


def make_multi_sample(
    rng: np.random.Generator, cfg: DataConfig, stage: Stage, images: int | None = None
) -> PerceptionSample:
    """A referring sample over ``images`` scenes (default: drawn from ``cfg.multi_images``), all one image size,
    each with its own object count from the stage. The referred object is drawn from all of them, its expression
    is one that no other object of any image matches, and one question is asked: naming the image or not
    (:data:`MULTI_TEMPLATES`, uniformly). The completion is ``<think>Image-k shows <e>.</think>`` and the
    qwen2_5_vl answer with image k and the box in image k's pixels."""
    lo, hi = cfg.multi_images
    m = lo + int(rng.integers(hi - lo + 1)) if images is None else images
    size = _image_size(rng, cfg)
    while True:
        scenes = [_scene(rng, cfg, int(rng.integers(stage.objects[0], stage.objects[1] + 1)), size)
                  for _ in range(m)]  # fmt: skip
        place = 1 + int(rng.integers(m))
        objs = [o for _, placed in scenes for o in placed]
        start = sum(len(placed) for _, placed in scenes[: place - 1])
        t = int(rng.integers(len(scenes[place - 1][1])))
        options = _unique_keys(objs, start + t)
        if options:
            break
    keys = _pick_keys(rng, options, cfg)
    singles = []
    for frame, placed in scenes:
        boxes = [tuple(int(v) for v in b) for b in frame.boxes]
        labels = [f"{o.size} {o.color} {o.shape}" for o in placed]
        singles.append(PerceptionSample("refer", frame.image, [], boxes, labels))
    own = singles[place - 1]
    expr = expression(scenes[place - 1][1][t], keys)
    question = MULTI_TEMPLATES[int(rng.integers(len(MULTI_TEMPLATES)))].format(e=expr, k=place)
    content = (
        user_content(m, question, DIALECT) if rng.random() < cfg.mirg_prompt else short_content(question, m)
    )
    completion = get_dialect(DIALECT).render_completion(f"Image-{place} shows {expr}.", place, own.boxes[t])
    others = [s for i, s in enumerate(singles) if i != place - 1]
    return replace(own, turns=[(content, completion)], targets=[t], meta={"expressions": [expr]}, context=others,
                   place=place)  # fmt: skip


def perception_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of sample ``index`` of a set seeded ``seed`` (independent per sample)."""
    return np.random.default_rng([seed, index])
