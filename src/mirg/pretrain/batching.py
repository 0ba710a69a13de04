"""Processor-built training batches with the loss on the completion tokens only.

The processor's own outputs (``input_ids``, ``attention_mask``, ``pixel_values``, ``image_grid_thw``,
``mm_token_type_ids``) go to the model unchanged (DESIGN.md §5: without ``mm_token_type_ids`` Qwen2.5-VL
silently falls back to 1-D positions). ``labels`` are ``-100`` everywhere except the assistant completion and
its closing ``<|im_end|>`` (every assistant turn of a multi-turn sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

ASSISTANT_HEADER = "<|im_start|>assistant\n"


def _find_all(seq: list[int], sub: list[int]) -> list[int]:
    n = len(sub)
    return [i for i in range(len(seq) - n + 1) if seq[i : i + n] == sub]


def _messages(s: Any, with_completion: bool) -> list[dict[str, Any]]:
    if hasattr(s, "messages"):
        return s.messages(with_completion)
    msgs = s["messages"]
    return msgs if with_completion else [m for m in msgs if m["role"] != "assistant"]


def _images(s: Any) -> list[Image.Image]:
    if hasattr(s, "image"):
        return [Image.fromarray(s.image, mode="RGB")]
    return list(s["images"])


def collate(processor: Any, samples: Sequence[Any]) -> dict[str, Any]:
    """Tensors for a training step. ``samples`` are :class:`~mirg.pretrain.tasks.PerceptionSample` or dicts
    with ``messages`` (user + assistant turns) and ``images`` (PIL images in placeholder order)."""
    tok = processor.tokenizer
    texts = [processor.apply_chat_template(_messages(s, True), tokenize=False) for s in samples]
    images = [im for s in samples for im in _images(s)]
    old_side = tok.padding_side
    tok.padding_side = "right"
    try:
        enc = processor(text=texts, images=images, return_tensors="pt", padding=True)
    finally:
        tok.padding_side = old_side
    header = tok(ASSISTANT_HEADER, add_special_tokens=False)["input_ids"]
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    labels = enc["input_ids"].clone()
    labels[:] = -100
    for row, ids in enumerate(enc["input_ids"].tolist()):
        starts = _find_all(ids, header)
        if not starts:
            raise ValueError("assistant header not found in a training sequence")
        for start in starts:
            start += len(header)
            stop = start
            while stop < len(ids) and ids[stop] != end_id:
                stop += 1
            stop = min(stop + 1, len(ids))
            labels[row, start:stop] = enc["input_ids"][row, start:stop]
    enc["labels"] = labels
    return dict(enc)


def prompt_batch(processor: Any, samples: Sequence[Any]) -> dict[str, Any]:
    """Left-padded generation inputs (prompts with the generation header) for ``samples``."""
    tok = processor.tokenizer
    texts = [processor.apply_chat_template(_messages(s, False), tokenize=False, add_generation_prompt=True)
             for s in samples]  # fmt: skip
    images = [im for s in samples for im in _images(s)]
    old_side = tok.padding_side
    tok.padding_side = "left"
    try:
        return dict(processor(text=texts, images=images, return_tensors="pt", padding=True))
    finally:
        tok.padding_side = old_side
