"""Vision stage of the tiny base's pretraining: the vision tower and merger learn *where* objects are before the
LLM reads them.

Why (lab/NOTES.md): trained end to end from random weights, the tiny Qwen2.5-VL learns what is in an
image (colours, shapes, counts) within a few hundred steps, but not where: the position features must be built
by the vision tower, and their only gradient comes through an LLM that does not yet read them (a chicken-and-egg
plateau that no run left in 4,000 steps). Real VLMs avoid this the same way: the vision encoder is pretrained
on its own before it is connected to the language model.

Here the vision tower + merger get a temporary linear head applied to *each* merged token. The token at cell
``(r, c)`` of the merged grid predicts, for every attribute combination a referring expression can use
(``shape``, ``color``, ``color shape``, ``size shape``, ``size color``, ``size color shape``), whether an object
with those attributes has its centre in the token's cell and, when exactly one does, that object's box in
units of the *whole* image side. So each token carries what is in its own region and where, in image
coordinates: the LLM then only has to find the token whose content matches the expression and read its box
(attention does exactly that). With ``base-m8`` at 112 px there is one token and one cell: the whole image.
(A first version mean-pooled the tokens; at 224 px, 2 x 2 tokens, its box error was 28.6 px and the LLM did
not separate two objects, lab/NOTES.md.) That is the ``cells`` head. The ``readout-pos`` head instead reads
the box of the object an attribute key names off all of an image's tokens with one attention layer, the way the
LLM has to (round eight). The head is not part of the model: the checkpoint stays plain Qwen2.5-VL, and the head
is kept beside it (``vision_head.safetensors``) for ``--vision-aux``, which keeps its loss on in the LLM stage.
The scenes are the pretraining generator's (:mod:`lab.tinybase.perception`) with a seed stream of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import Any

import numpy as np

from lab.tinybase.config import HEAD_KINDS
from lab.tinybase.perception import DataConfig, PerceptionSample, Stage, make_sample
from mirg.synth.render import SHAPES
from mirg.synth.scene import COLOR_NAMES, SIZES

FAMILIES: tuple[tuple[str, ...], ...] = (
    ("shape",), ("color",), ("color", "shape"), ("size", "shape"), ("size", "color"), ("size", "color", "shape"),
)  # fmt: skip
_VALUES = {"size": SIZES, "color": COLOR_NAMES, "shape": SHAPES}
KEYS: tuple[tuple[str, ...], ...] = tuple(
    (fam, *vals) for fam in FAMILIES for vals in product(*(_VALUES[a] for a in fam))
)  # type: ignore[misc]
_INDEX = {k: i for i, k in enumerate(KEYS)}


def named_attributes(expression: str) -> dict[str, str]:
    """The attributes a referring expression names, in size, color, shape order: 'the small blue triangle' ->
    ``{"size": "small", "color": "blue", "shape": "triangle"}``, 'the red object' -> ``{"color": "red"}``."""
    words = set(expression.split())
    return {a: w for a in ("size", "color", "shape") for w in _VALUES[a] if w in words}


def expression_key(expression: str) -> int:
    """Index in :data:`KEYS` of what a referring expression names: 'the small blue triangle' ->
    ``(("size", "color", "shape"), "small", "blue", "triangle")``, 'the blue object' -> ``(("color",), "blue")``."""
    attrs = named_attributes(expression)
    return _INDEX[(tuple(attrs), *attrs.values())]


def targets(
    sample: PerceptionSample, grid: tuple[int, int] = (1, 1)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell of a ``grid = (rows, cols)`` split of the image, in raster order (the merged tokens' order):
    (presence [G, K]: an object with the key's attributes has its box centre in the cell, boxes [G, K, 4] in
    units of the image side, mask [G, K]: the box is defined, i.e. exactly one such object) for the K keys."""
    rows, cols = grid
    k = len(KEYS)
    count = np.zeros((rows * cols, k), dtype=np.int64)
    boxes = np.zeros((rows * cols, k, 4), dtype=np.float32)
    w, h = sample.size
    for label, box in zip(sample.labels, sample.boxes, strict=True):
        size, color, shape = label.split()
        attrs = {"size": size, "color": color, "shape": shape}
        r = min(rows - 1, int((box[1] + box[3]) / 2 * rows / h))
        c = min(cols - 1, int((box[0] + box[2]) / 2 * cols / w))
        for fam in FAMILIES:
            i = _INDEX[(fam, *(attrs[a] for a in fam))]
            count[r * cols + c, i] += 1
            boxes[r * cols + c, i] = (box[0] / w, box[1] / h, box[2] / w, box[3] / h)
    return (count > 0).astype(np.float32), boxes, (count == 1).astype(np.float32)


def vision_samples(seed: int, step: int, batch_size: int, cfg: DataConfig) -> list[PerceptionSample]:
    """The vision stage's batch of ``step`` (scenes of the last curriculum stage's object range; a seed stream
    distinct from the LLM stage's)."""
    stage = Stage(cfg.stages[-1].objects, (0.0, 1.0, 0.0))
    return [
        make_sample(np.random.default_rng([seed, step, i, 11]), cfg, stage, "list") for i in range(batch_size)
    ]


def unique_keys(sample: PerceptionSample) -> list[tuple[int, tuple[float, float, float, float]]]:
    """(key index, box in units of the image side) for every key exactly one object of the image has: the keys a
    referring expression can use, with the object it names."""
    w, h = sample.size
    found: dict[int, list[tuple[float, float, float, float]]] = {}
    for label, box in zip(sample.labels, sample.boxes, strict=True):
        size, color, shape = label.split()
        attrs = {"size": size, "color": color, "shape": shape}
        for fam in FAMILIES:
            i = _INDEX[(fam, *(attrs[a] for a in fam))]
            found.setdefault(i, []).append((box[0] / w, box[1] / h, box[2] / w, box[3] / h))
    return [(i, b[0]) for i, b in sorted(found.items()) if len(b) == 1]


def batch_targets(samples: Sequence[PerceptionSample], grids: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """Targets of both heads for one image per sample: per token (``presence``, ``boxes``, ``mask``; rows are
    the merged tokens of all images in order, :func:`targets`) and per image (``keys`` [N, M] with the boxes
    ``key_boxes`` [N, M, 4] and ``key_mask`` [N, M] of its unique keys, padded to the longest list)."""
    import torch

    t = [targets(s, g) for s, g in zip(samples, grids, strict=True)]
    presence, boxes, mask = (torch.from_numpy(np.concatenate(x)) for x in zip(*t, strict=True))
    uniq = [unique_keys(s) for s in samples]
    m = max(1, *(len(u) for u in uniq))
    keys = torch.zeros(len(samples), m, dtype=torch.long)
    key_boxes = torch.zeros(len(samples), m, 4)
    key_mask = torch.zeros(len(samples), m)
    for r, u in enumerate(uniq):
        for c, (k, b) in enumerate(u):
            keys[r, c], key_boxes[r, c], key_mask[r, c] = k, torch.tensor(b), 1.0
    return {"presence": presence, "boxes": boxes, "mask": mask, "keys": keys, "key_boxes": key_boxes,
            "key_mask": key_mask}  # fmt: skip


def _grids(processor: Any, image_grid_thw: Any) -> list[tuple[int, int]]:
    m = processor.image_processor.merge_size
    return [(int(hh) // m, int(ww) // m) for _, hh, ww in image_grid_thw.tolist()]


def prepare(processor: Any, samples: Sequence[PerceptionSample], compact: bool = False) -> dict[str, Any]:
    """CPU tensors of a vision-stage batch: the image processor's ``pixel_values`` and ``image_grid_thw`` and the
    targets (:func:`batch_targets`). Pure and picklable, so data workers can build it."""
    from PIL import Image

    from lab.tinybase.batching import _compact, _raw_kwargs

    enc = processor.image_processor(images=[Image.fromarray(s.image, mode="RGB") for s in samples],
                                    return_tensors="pt", **_raw_kwargs(compact))  # fmt: skip
    out = {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"],
           **batch_targets(samples, _grids(processor, enc["image_grid_thw"]))}  # fmt: skip
    return _compact(processor, out) if compact else out


def llm_targets(processor: Any, samples: Sequence[PerceptionSample], image_grid_thw: Any) -> dict[str, Any]:
    """:func:`batch_targets` for the images of an LLM-stage batch, in the order the vision tower returns their
    merged tokens (samples in batch order, each sample's images in prompt order: :meth:`PerceptionSample.scenes`)."""
    grids = _grids(processor, image_grid_thw)
    scenes = [scene for s in samples for scene in s.scenes()]
    if len(grids) != len(scenes):
        raise ValueError(f"{len(scenes)} images in the samples but {len(grids)} in the batch")
    return batch_targets(scenes, grids)


MAX_CELLS = 256  # readout-pos: a learned embedding per merged-token index (16 x 16 tokens at most)


def _readout_head(d: int, heads: int = 4, dim: int = 32) -> Any:
    """The ``readout-pos`` head: one attention layer that reads a box off an image's tokens for a key, the way
    the LLM must. A learned query per key scores the tokens (softmax over the image's tokens, ``heads`` heads);
    the values, the same linear map for every key, are summed with those weights and mapped to the box. So the
    tokens are trained to be *selectable* by the attributes and to carry the box in a key-independent form.

    A learned embedding of each token's index in the image's raster of merged tokens is added first (zero at the
    start). The LLM knows where a token is from its mRoPE position, but the
    vision tower cannot tell the cells apart: its attention sees only relative positions, and the merger orders
    patches only within a cell, so on a plain background no token can say which cell it is (round nine). With
    the cell given, the head asks the tokens only for what they can know: what is in the cell and where in it.
    The embedding is per index, so it assumes one image size per run (``--image-size``)."""
    import torch

    class Readout(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads, self.dim = heads, dim
            self.query = torch.nn.Embedding(len(KEYS), heads * dim)
            self.key = torch.nn.Linear(d, heads * dim)
            self.value = torch.nn.Linear(d, heads * dim)
            self.out = torch.nn.Linear(heads * dim, 4)
            self.cell = torch.nn.Parameter(torch.zeros(MAX_CELLS, d))

        def forward(self, tokens: Any, keys: Any) -> Any:  # [N, T, d], [N, M] -> boxes [N, M, 4]
            n, t, _ = tokens.shape
            if t > MAX_CELLS:
                raise ValueError(f"readout-pos: {t} tokens per image, at most {MAX_CELLS}")
            tokens = tokens + self.cell[:t]
            q = self.query(keys).view(n, -1, self.heads, self.dim)
            k = self.key(tokens).view(n, t, self.heads, self.dim)
            v = self.value(tokens).view(n, t, self.heads, self.dim)
            att = torch.einsum("nmhd,nthd->nmht", q, k).mul(self.dim**-0.5).softmax(-1)
            return self.out(torch.einsum("nmht,nthd->nmhd", att, v).reshape(n, -1, self.heads * self.dim))

    return Readout()


class VisionStage:
    """The temporary head and its loss on the merged tokens. ``model`` is a Qwen2.5-VL
    ``...ForConditionalGeneration``; ``kind`` is ``cells`` (a linear head on every token: what is in its cell
    and where) or ``readout-pos`` (:func:`_readout_head`: the box of the object a key names, read off all tokens
    of the image by attention)."""

    def __init__(self, model: Any, processor: Any, kind: str = "cells"):
        import torch

        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown vision head {kind!r}; choose from {', '.join(HEAD_KINDS)}")
        self.model, self.processor, self.kind = model, processor, kind
        d = model.config.text_config.hidden_size
        head = torch.nn.Linear(d, 5 * len(KEYS)) if kind == "cells" else _readout_head(d)
        self.head = head.to(model.device)

    def parameters(self) -> list[Any]:
        return [*self.model.model.visual.parameters(), *self.head.parameters()]

    def fits(self, state: dict[str, Any]) -> bool:
        """Whether a saved head ``state`` (e.g. from an ``--init`` checkpoint) is this head's kind and shape."""
        own = self.head.state_dict()
        return state.keys() == own.keys() and all(state[k].shape == own[k].shape for k in own)

    def _tokens(self, samples: Sequence[PerceptionSample] | dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Merged tokens and targets (on the model's device) for ``samples`` or a batch :func:`prepare` made."""
        from lab.tinybase.batching import to_device

        b = samples if isinstance(samples, dict) else prepare(self.processor, samples)
        b = to_device(self.processor, b, self.model.device)
        visual = self.model.model.visual
        return visual(b["pixel_values"].to(visual.dtype), grid_thw=b["image_grid_thw"]).pooler_output, b

    def _predict(self, tokens: Any, tg: dict[str, Any]) -> Any:
        if self.kind == "cells":  # one row per merged token, all images in order
            return self.head(tokens.float()).view(-1, len(KEYS), 5)
        n = tg["keys"].shape[0]
        return self.head(tokens.float().view(n, tokens.shape[0] // n, -1), tg["keys"])

    def tokens_loss(self, tokens: Any, tg: dict[str, Any]) -> Any:
        """The loss on merged tokens (from the vision tower, or caught in the LLM stage's forward for
        ``--vision-aux``) with their targets (:func:`batch_targets`, on the tokens' device)."""
        out = self._predict(tokens, tg)
        if self.kind == "cells":
            return self.loss_from(out, tg["presence"], tg["boxes"], tg["mask"])
        import torch.nn.functional as F

        reg = F.smooth_l1_loss(out, tg["key_boxes"], beta=0.05, reduction="none").mean(-1)
        return (reg * tg["key_mask"]).sum() / tg["key_mask"].sum().clamp(min=1)

    def loss(self, samples: Sequence[PerceptionSample] | dict[str, Any]) -> Any:
        """The vision stage's loss on ``samples`` (or a :func:`prepare` batch); see :meth:`loss_from` for
        ``cells`` and :func:`_readout_head` for ``readout-pos`` (smooth L1, beta 0.05, on the unique keys' boxes)."""
        return self.tokens_loss(*self._tokens(samples))

    @staticmethod
    def loss_from(out: Any, presence: Any, boxes: Any, mask: Any) -> Any:
        """``cells``: presence (binary cross-entropy over all tokens and keys) + box (smooth L1, beta 0.05, over
        the (token, key) pairs with a unique object) + zero box where the cell holds no such object.

        The last term makes the box readout *additive* over tokens: summed over an image's tokens it gives the
        box of every key that is unique in the image (the only keys a referring expression uses), and a key's
        box output is non-zero only where the image holds such an object. The LLM reads that more easily: with
        one object per image (``base-m8``, 3,000 LLM steps) held-out Acc@0.5 went from 72.5 % to 93.5 %, although
        the head's own box error grew (4.7 -> 12.1 px; lab/NOTES.md, fourth round).
        """
        import torch.nn.functional as F

        cls = F.binary_cross_entropy_with_logits(out[..., 0], presence)
        reg = F.smooth_l1_loss(out[..., 1:], boxes, beta=0.05, reduction="none").mean(-1)
        empty = 1.0 - presence  # no such object in the cell: the box output is trained to 0
        return (
            cls
            + (reg * mask).sum() / mask.sum().clamp(min=1)
            + (reg * empty).sum() / empty.sum().clamp(min=1)
        )

    def box_error(self, samples: Sequence[PerceptionSample]) -> float:
        """Mean absolute box error in pixels of the image side: over the (token, key) pairs with a unique object
        (``cells``) or over the keys unique in each image (``readout-pos``)."""
        import torch

        with torch.no_grad():
            tokens, tg = self._tokens(samples)
            out = self._predict(tokens, tg)
        if self.kind == "cells":
            pred, boxes, mask = out[..., 1:], tg["boxes"], tg["mask"]
        else:
            pred, boxes, mask = out, tg["key_boxes"], tg["key_mask"]
        err = (pred - boxes).abs().mean(-1)
        side = float(samples[0].size[0])
        return float((err * mask).sum() / mask.sum().clamp(min=1)) * side
