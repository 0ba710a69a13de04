"""Vision stage of ``mirg pretrain``: the vision tower and merger learn *where* objects are before the LLM reads them.

Why (docs/pretraining.md): trained end to end from random weights, the tiny Qwen2.5-VL learns what is in an
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
not separate two objects, docs/pretraining.md.) The head is discarded afterwards; the shipped model is the
plain Qwen2.5-VL architecture. The scenes are the pretraining generator's (``mirg.pretrain.tasks``) with a
seed stream of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import Any

import numpy as np

from mirg.pretrain.tasks import DataConfig, PerceptionSample, Stage, make_sample
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


def prepare(processor: Any, samples: Sequence[PerceptionSample], compact: bool = False) -> dict[str, Any]:
    """CPU tensors of a vision-stage batch: the image processor's ``pixel_values`` and ``image_grid_thw`` and the
    per-token targets (``presence``, ``boxes``, ``mask``). Pure and picklable, so data workers can build it."""
    import torch
    from PIL import Image

    from mirg.pretrain.batching import _compact, _raw_kwargs

    enc = processor.image_processor(images=[Image.fromarray(s.image, mode="RGB") for s in samples],
                                    return_tensors="pt", **_raw_kwargs(compact))  # fmt: skip
    m = processor.image_processor.merge_size
    grids = [(int(hh) // m, int(ww) // m) for _, hh, ww in enc["image_grid_thw"].tolist()]
    t = [targets(s, g) for s, g in zip(samples, grids, strict=True)]
    presence, boxes, mask = (torch.from_numpy(np.concatenate(x)) for x in zip(*t, strict=True))
    out = {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"], "presence": presence,
           "boxes": boxes, "mask": mask}  # fmt: skip
    return _compact(processor, out) if compact else out


def llm_targets(processor: Any, samples: Sequence[PerceptionSample], image_grid_thw: Any) -> dict[str, Any]:
    """Per-token targets (:func:`targets`) for the images of an LLM-stage batch, in the order the vision tower
    returns their merged tokens (one image per sample, samples in batch order)."""
    import torch

    m = processor.image_processor.merge_size
    grids = [(int(hh) // m, int(ww) // m) for _, hh, ww in image_grid_thw.tolist()]
    if len(grids) != len(samples):
        raise ValueError(
            f"{len(samples)} samples but {len(grids)} images: --vision-aux needs one image per sample"
        )
    t = [targets(s, g) for s, g in zip(samples, grids, strict=True)]
    presence, boxes, mask = (torch.from_numpy(np.concatenate(x)) for x in zip(*t, strict=True))
    return {"presence": presence, "boxes": boxes, "mask": mask}


class VisionStage:
    """The temporary head and the loss. ``model`` is a Qwen2.5-VL ``...ForConditionalGeneration``."""

    def __init__(self, model: Any, processor: Any):
        import torch

        self.model, self.processor = model, processor
        d = model.config.text_config.hidden_size
        self.head = torch.nn.Linear(d, 5 * len(KEYS)).to(model.device)

    def parameters(self) -> list[Any]:
        return [*self.model.model.visual.parameters(), *self.head.parameters()]

    def _forward(self, samples: Sequence[PerceptionSample] | dict[str, Any]) -> tuple[Any, Any, Any, Any]:
        """Head outputs and targets for ``samples`` or for a batch :func:`prepare` made of them."""
        from mirg.pretrain.batching import to_device

        b = samples if isinstance(samples, dict) else prepare(self.processor, samples)
        b = to_device(self.processor, b, self.model.device)
        visual = self.model.model.visual
        v = visual(b["pixel_values"].to(visual.dtype), grid_thw=b["image_grid_thw"]).pooler_output
        out = self.head(v.float()).view(-1, len(KEYS), 5)  # one row per merged token, all images in order
        return out, b["presence"], b["boxes"], b["mask"]

    def loss(self, samples: Sequence[PerceptionSample] | dict[str, Any]) -> Any:
        """Presence (binary cross-entropy over all tokens and keys) + box (smooth L1, beta 0.05, over the
        (token, key) pairs with a unique object) + zero box where the cell holds no such object.

        The last term makes the box readout *additive* over tokens: summed over an image's tokens it gives the
        box of every key that is unique in the image (the only keys a referring expression uses), and a key's
        box output is non-zero only where the image holds such an object. The LLM reads that more easily: with
        one object per image (``base-m8``, 3,000 LLM steps) held-out Acc@0.5 went from 72.5 % to 93.5 %, although
        the head's own box error grew (4.7 -> 12.1 px; docs/pretraining.md, fourth round).
        """
        return self.loss_from(*self._forward(samples))

    def tokens_loss(self, tokens: Any, batch_targets: dict[str, Any]) -> Any:
        """The same loss on merged tokens the LLM stage's forward already computed (``--vision-aux``), with the
        targets :func:`llm_targets` attached to its batch (on the tokens' device)."""
        out = self.head(tokens.float()).view(-1, len(KEYS), 5)
        return self.loss_from(out, batch_targets["presence"], batch_targets["boxes"], batch_targets["mask"])

    @staticmethod
    def loss_from(out: Any, presence: Any, boxes: Any, mask: Any) -> Any:
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
        """Mean absolute box error in pixels of the image side over the (token, key) pairs with a unique object."""
        import torch

        with torch.no_grad():
            out, _, boxes, mask = self._forward(samples)
        err = (out[..., 1:] - boxes).abs().mean(-1)
        side = float(samples[0].size[0])
        return float((err * mask).sum() / mask.sum().clamp(min=1)) * side
