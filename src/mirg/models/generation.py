"""Local generation with transformers: greedy decoding of a batch of (Sample, images) prompts.

:class:`TransformersBackend` builds the prompt with :mod:`mirg.prompting` (the one prompt builder) and returns,
per :class:`Request`, a :class:`Generation`: the raw completion text and the processor-resized (width, height)
of each image, which Qwen2.5-VL's pixel coordinates need. It pads on the left so a batch decodes exactly as
one-at-a-time. Evaluation (:mod:`mirg.evaluation`), ``mirg predict`` and the local teacher of
:mod:`mirg.trajectories` generate through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mirg.prompting import build_messages, prompt_text, resized_sizes
from mirg.sample import Sample


@dataclass
class Request:
    sample: Sample
    images: list[Any]  # PIL images, Image-1..N


@dataclass
class Generation:
    text: str  # completion, special tokens kept (Qwen2-VL boxes use <|box_start|>), end-of-turn removed
    num_tokens: int
    resized_wh: list[tuple[int, int]]  # per image, (width, height) after the processor's resize


class TransformersBackend:
    """Greedy generation with ``model.generate`` on left-padded batches."""

    name = "transformers"

    def __init__(self, loaded: Any, max_new_tokens: int = 256):
        self.model = loaded.model
        self.processor = loaded.processor
        self.dialect = loaded.dialect
        self.max_new_tokens = max_new_tokens
        tok = self.processor.tokenizer
        tok.padding_side = "left"
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        for t in ("<|im_end|>", "<|endoftext|>"):
            tid = tok.convert_tokens_to_ids(t)
            if isinstance(tid, int) and tid != tok.unk_token_id:
                eos_ids.add(tid)
        self.eos_ids = sorted(eos_ids)

    def prompts(self, requests: Sequence[Request]) -> list[str]:
        return [prompt_text(self.processor, build_messages(r.sample, self.dialect)) for r in requests]

    def encode(self, requests: Sequence[Request]) -> Any:
        inputs = self.processor(
            text=self.prompts(requests),
            images=[r.images for r in requests],
            return_tensors="pt",
            padding=True,
        )
        return inputs.to(self.model.device)

    def decode(self, token_ids: Sequence[int]) -> tuple[str, int]:
        """Completion text up to (not including) the first end-of-turn token, special tokens kept."""
        ids = list(token_ids)
        ids = ids[: next((i for i, t in enumerate(ids) if t in self.eos_ids), len(ids))]
        text = self.processor.tokenizer.decode(
            ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        return text, len(ids)

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        import torch

        if not requests:
            return []
        inputs = self.encode(requests)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=self.eos_ids,
                pad_token_id=self.pad_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        new = out[:, inputs["input_ids"].shape[1] :].tolist()
        patch_size = int(getattr(self.processor.image_processor, "patch_size", 14))
        sizes = resized_sizes(inputs["image_grid_thw"].tolist(), patch_size)
        results, start = [], 0
        for r, ids in zip(requests, new, strict=True):
            n = len(r.images)
            text, num = self.decode(ids)
            results.append(Generation(text, num, sizes[start : start + n]))
            start += n
        return results
