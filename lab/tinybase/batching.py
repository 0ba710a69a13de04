"""Processor-built training batches with the loss on the completion tokens only.

The processor's own outputs (``input_ids``, ``attention_mask``, ``pixel_values``, ``image_grid_thw``,
``mm_token_type_ids``) go to the model unchanged (without ``mm_token_type_ids`` Qwen2.5-VL
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
    if isinstance(s, dict):
        return list(s["images"])
    return [Image.fromarray(im, mode="RGB") for im in s.images]


def _raw_kwargs(compact: bool) -> dict[str, Any]:
    return {"do_rescale": False, "do_normalize": False} if compact else {}


def _compact(processor: Any, enc: Any) -> Any:
    """Replace the processor's float ``pixel_values`` (made with rescaling and normalisation off, so they hold
    the 0-255 pixel values) by ``pixel_uint8`` [patches, channels, patch pixels]: the same patches without the
    temporal copies, 1 byte per value instead of 4 x ``temporal_patch_size``. :func:`to_device` undoes it."""
    import torch

    ip = processor.image_processor
    pv = enc.pop("pixel_values")
    c, t = len(ip.image_mean), ip.temporal_patch_size
    enc["pixel_uint8"] = pv.view(pv.shape[0], c, t, -1)[:, :, 0].round().to(torch.uint8)
    return enc


def to_device(processor: Any, batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """``batch`` on ``device``, with a compact ``pixel_uint8`` (from ``collate(..., compact=True)``) turned back
    into the processor's normalised ``pixel_values`` there (same values; see :func:`_compact`)."""
    import torch

    out = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    if "pixel_uint8" in out:
        ip = processor.image_processor
        x = out.pop("pixel_uint8").float()
        n, c, pp = x.shape
        mean = torch.tensor(ip.image_mean, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
        std = torch.tensor(ip.image_std, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
        x = x.unsqueeze(2).expand(n, c, ip.temporal_patch_size, pp) * ip.rescale_factor
        out["pixel_values"] = ((x - mean) / std).reshape(n, -1)
    return out


def collate(processor: Any, samples: Sequence[Any], compact: bool = False) -> dict[str, Any]:
    """Tensors for a training step. ``samples`` are :class:`~lab.tinybase.perception.PerceptionSample` or dicts
    with ``messages`` (user + assistant turns) and ``images`` (PIL images in placeholder order). ``compact``:
    pixels as ``pixel_uint8`` (8 times fewer bytes to hand from a data worker; :func:`to_device` restores
    ``pixel_values``)."""
    tok = processor.tokenizer
    texts = [processor.apply_chat_template(_messages(s, True), tokenize=False) for s in samples]
    images = [im for s in samples for im in _images(s)]
    old_side = tok.padding_side
    tok.padding_side = "right"
    try:
        enc = processor(text=texts, images=images, return_tensors="pt", padding=True, **_raw_kwargs(compact))
    finally:
        tok.padding_side = old_side
    if compact:
        enc = _compact(processor, enc)
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
