"""Wiring checks for the pretraining batches: processor outputs reach the model intact (mm_token_type_ids,
image_grid_thw, 3-D positions), and the tiny model memorises 64 two-image samples whose answers depend on both
the images and the question (so images and question really reach the answer)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mirg.answers import get_dialect
from mirg.boxes import iou
from mirg.synth.render import ObjectSpec, render_objects

SIDE = 84  # 3 x 3 merged vision tokens per image (wiring checks)
MEMO_SIDE = 56  # 1 merged token per image (memorisation)


def memorise_set(n_pairs: int = 32, seed: int = 0, side: int = SIDE) -> list[dict]:
    """``2 * n_pairs`` samples of two images, each holding one circle of a named colour. A colour's place and
    size depend on which image (1 or 2) it is drawn in. Each image pair is asked once about each of its two
    colours, so the answer (image + box) is fixed only by images and question together: the question alone
    does not say which image holds the colour (nor so the box), and the images alone hold two answers."""
    from PIL import Image

    from mirg.synth.render import COLORS

    names = list(COLORS)
    rng = np.random.default_rng(seed)
    places = {}  # (colour, image) -> (cx, cy, diameter)
    for c in names:
        for k in (1, 2):
            d = int(rng.integers(side // 5, side // 3))
            cx, cy = (float(v) for v in rng.integers(d // 2 + 1, side - d // 2 - 1, size=2))
            places[c, k] = (cx, cy, d)
    dialect = get_dialect("qwen2_5_vl")
    out = []
    for _ in range(n_pairs):
        colors = [names[int(i)] for i in rng.choice(len(names), size=2, replace=False)]
        images, boxes = [], {}
        for k, color in enumerate(colors, start=1):
            cx, cy, d = places[color, k]
            r = render_objects([ObjectSpec("circle", color, cx, cy, d)], side)
            images.append(Image.fromarray(r.image))
            boxes[color] = (k, r.boxes[0])
        for color in colors:
            k, box = boxes[color]
            user = [{"type": "text", "text": "Image-1: "}, {"type": "image"}, {"type": "text", "text": "\nImage-2: "},
                    {"type": "image"}, {"type": "text", "text": f"\nWhere is the {color} circle?"}]  # fmt: skip
            completion = dialect.render_completion("x", k, box)
            out.append({
                "messages": [{"role": "user", "content": user},
                             {"role": "assistant", "content": [{"type": "text", "text": completion}]}],
                "images": images, "completion": completion,
            })  # fmt: skip
    return out


def test_batch_carries_processor_outputs(tiny_model_dir):
    import torch

    from mirg.models.loading import load_model
    from mirg.pretrain.batching import collate

    lm = load_model(tiny_model_dir)
    samples = memorise_set(2)
    batch = collate(lm.processor, samples)
    assert {
        "input_ids",
        "attention_mask",
        "pixel_values",
        "image_grid_thw",
        "mm_token_type_ids",
        "labels",
    } <= set(batch)
    assert batch["image_grid_thw"].tolist() == [[1, 6, 6]] * 8  # 84 px / 14 px patches, 2 images x 4 samples
    image_id = lm.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    is_image = batch["input_ids"] == image_id
    assert torch.equal(batch["mm_token_type_ids"].bool(), is_image)
    assert int(is_image.sum()) == 8 * 9  # 3 x 3 merged tokens per image
    # labels: exactly the completion and its <|im_end|>
    tok = lm.processor.tokenizer
    for row, s in enumerate(samples):
        labelled = batch["input_ids"][row][batch["labels"][row] != -100]
        assert tok.decode(labelled) == s["completion"] + "<|im_end|>"
    # 3-D (t, h, w) positions: the image tokens of an image span a 3 x 3 grid in h and w
    pos, _ = lm.model.model.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"], batch["image_grid_thw"],
                                           attention_mask=batch["attention_mask"])  # fmt: skip
    img_pos = pos[:, 0, is_image[0]]
    first = img_pos[:, :9]
    assert sorted(set(first[1].tolist())) == [first[1].min().item() + i for i in range(3)]
    assert sorted(set(first[2].tolist())) == [first[2].min().item() + i for i in range(3)]
    assert len(set(first[0].tolist())) == 1


@pytest.mark.slow
def test_tiny_model_memorises_multi_image_samples(tiny_model_dir):
    """Loss -> ~0 and greedy decoding reproduces the answers: only possible if images and question reach it."""
    import torch

    from mirg.models.loading import load_model
    from mirg.pretrain.batching import collate
    from mirg.pretrain.metrics import generate

    torch.manual_seed(0)
    lm = load_model(tiny_model_dir)
    model, processor = lm.model, lm.processor
    samples = memorise_set(32, side=MEMO_SIDE)
    batch = collate(processor, samples)
    steps = 700
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    model.train()
    loss = None
    for _ in range(steps):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if loss.item() < 0.003:
            break
    assert loss is not None and loss.item() < 0.05, loss.item()
    texts = generate(model, processor, samples, batch_size=64, max_new_tokens=40)
    dialect = get_dialect("qwen2_5_vl")
    exact = image_ok = box_ok = 0
    for t, s in zip(texts, samples, strict=True):
        got, want = dialect.parse(t), dialect.parse(s["completion"])
        exact += t.strip() == s["completion"]
        image_ok += got.ok and got.image == want.image
        box_ok += got.ok and got.image == want.image and iou(got.box, want.box) >= 0.5
    n = len(samples)
    assert image_ok >= 0.8 * n and box_ok >= 0.8 * n, (image_ok, box_ok, exact, texts[:2])
