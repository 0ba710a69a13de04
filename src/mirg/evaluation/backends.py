"""Evaluation's generation backends: greedy decoding of a batch of (Sample, images) prompts.

:class:`~mirg.models.generation.TransformersBackend` (with its ``Request`` and ``Generation``) lives in
:mod:`mirg.models.generation`, shared with the local teacher of :mod:`mirg.trajectories`, and is re-exported here;
:class:`VLLMBackend` gives the same prompts and the same ``Generation`` results: per request, the raw completion
text and the processor-resized (width, height) of each image, which Qwen2.5-VL's pixel coordinates need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mirg.errors import MirgError
from mirg.models.generation import Generation, Request, TransformersBackend
from mirg.prompting import build_messages, prompt_text, resized_size

__all__ = ["Generation", "Request", "TransformersBackend", "VLLMBackend", "vllm_available"]


class VLLMBackend:
    """Greedy generation with vLLM (GPU users; ``pip install mirg[vllm]``). Same prompts, same outputs format.

    Resized image sizes come from the processor's own arithmetic (:func:`mirg.prompting.resized_size`), which
    is what vLLM's Qwen2.5-VL input processor applies too.
    """

    name = "vllm"

    def __init__(
        self, model_path: str, processor: Any, dialect: Any, max_new_tokens: int = 256, max_images: int = 8
    ):
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise MirgError("the vllm backend needs vllm installed (pip install 'mirg[vllm]')") from None
        self.processor = processor
        self.dialect = dialect
        self.llm = LLM(model=model_path, limit_mm_per_prompt={"image": max_images}, trust_remote_code=False)
        self.params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, skip_special_tokens=False)

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        inputs = [
            {
                "prompt": prompt_text(self.processor, build_messages(r.sample, self.dialect)),
                "multi_modal_data": {"image": r.images},
            }
            for r in requests
        ]
        outputs = self.llm.generate(inputs, self.params, use_tqdm=False)
        results = []
        for r, o in zip(requests, outputs, strict=True):
            comp = o.outputs[0]
            text = comp.text
            for t in ("<|im_end|>", "<|endoftext|>"):
                text = text.split(t, 1)[0]
            sizes = [resized_size(im.size, self.processor) for im in r.images]
            results.append(Generation(text, len(comp.token_ids), sizes))
        return results


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None
