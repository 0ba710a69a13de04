"""Wiring checks for the pretraining batches: processor outputs reach the model intact (mm_token_type_ids,
image_grid_thw, 3-D positions), and the answer's logits depend on both images and the question."""

from __future__ import annotations

import numpy as np

from mirg.answers import get_dialect
from mirg.synth.render import ObjectSpec, render_objects

SIDE = 84  # 3 x 3 merged vision tokens per image (wiring checks)


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

    from lab.tinybase.batching import collate
    from mirg.models.loading import load_model

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


def test_answer_logits_depend_on_each_image_and_the_question(tiny_model_dir):
    """The logits over a sample's completion move when its second image or its question changes, and stay put
    when only another sample of the batch changes: both images and the question reach the answer, and rows
    do not leak into each other. (A training-based check of the same, memorising 64 samples, took 5 minutes.)"""
    import torch

    from lab.tinybase.batching import collate
    from mirg.models.loading import load_model

    torch.manual_seed(0)
    lm = load_model(tiny_model_dir)
    lm.model.eval()
    samples = memorise_set(2)

    def answer_logits(batch_samples: list[dict]) -> list:
        batch = collate(lm.processor, batch_samples)
        with torch.no_grad():
            logits = lm.model(**batch).logits
        return [logits[r][batch["labels"][r] != -100] for r in range(len(batch_samples))]

    def moved(a, b) -> float:
        return float((a - b).abs().max())

    ref = answer_logits(samples)
    second = dict(samples[0], images=[samples[0]["images"][0], samples[0]["images"][0].transpose(0)])
    out = answer_logits([second, *samples[1:]])
    assert moved(out[0], ref[0]) > 1e-4 and all(
        moved(o, r) < 1e-5 for o, r in zip(out[1:], ref[1:], strict=True)
    )
    first = dict(samples[0], images=[samples[0]["images"][0].transpose(1), samples[0]["images"][1]])
    assert moved(answer_logits([first, *samples[1:]])[0], ref[0]) > 1e-4
    asked = [dict(m) for m in samples[0]["messages"]]
    asked[0] = {
        "role": "user",
        "content": [*asked[0]["content"][:-1], {"type": "text", "text": "\nWhere is it?"}],
    }
    assert moved(answer_logits([dict(samples[0], messages=asked), *samples[1:]])[0], ref[0]) > 1e-4
