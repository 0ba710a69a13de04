"""Load a local Qwen2.5-VL or Qwen2-VL checkpoint (model + processor) without torchvision or remote code.

* The stock ``Qwen2_5_VLProcessor`` / ``Qwen2VLProcessor`` also builds a video processor, which needs
  torchvision; without it ``AutoProcessor`` silently falls back to a bare tokenizer (docs/contract.md).
  :class:`MirgQwen2_5_VLProcessor` / :class:`MirgQwen2VLProcessor` are the same processors minus the video
  part; :func:`register_processors` maps both model types to them in ``AutoProcessor``, so plain
  ``AutoProcessor.from_pretrained(path)`` (and therefore TRL) gets a real multimodal processor.
* The model family decides the answer dialect and coordinates (:func:`family_of`, :func:`dialect_for`).
* Device and dtype: CUDA + bf16 when a GPU is present, CPU + fp32 otherwise (:func:`choose_device_dtype`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirg.answers import Dialect, get_dialect
from mirg.errors import MirgError, not_found

FAMILIES = {"qwen2_5_vl": "qwen2_5_vl", "qwen2_vl": "qwen2_vl"}  # config model_type -> answer dialect name


@functools.cache
def processor_classes() -> tuple[type, type]:
    """(Qwen2.5-VL processor class, Qwen2-VL processor class), both image-only; created once."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    def _init(
        self: Any, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kw: Any
    ):
        # What the stock __init__ does, minus the video processor (no torchvision needed).
        for kind in ("image", "video"):
            token = getattr(tokenizer, f"{kind}_token", f"<|{kind}_pad|>")
            setattr(self, f"{kind}_token", token)
            token_id = getattr(tokenizer, f"{kind}_token_id", None) or tokenizer.convert_tokens_to_ids(token)
            setattr(self, f"{kind}_token_id", token_id)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kw)

    def image_only(base: type) -> type:
        doc = f"{base.__name__} without the video processor (images only; loads without torchvision)."
        attrs = {"__init__": _init, "__doc__": doc, "__module__": __name__}
        return type("Mirg" + base.__name__, (base,), attrs)

    return image_only(Qwen2_5_VLProcessor), image_only(Qwen2VLProcessor)


def register_processors() -> None:
    """Map Qwen2.5-VL and Qwen2-VL configs to the image-only processors in ``AutoProcessor`` (idempotent)."""
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2VLConfig

    q25, q2 = processor_classes()
    AutoProcessor.register(Qwen2_5_VLConfig, q25, exist_ok=True)
    AutoProcessor.register(Qwen2VLConfig, q2, exist_ok=True)


def family_of(path: str | Path) -> str:
    """The model family of a checkpoint folder, ``"qwen2_5_vl"`` or ``"qwen2_vl"`` (from config.json)."""
    cfg = Path(path) / "config.json"
    if not Path(path).is_dir():
        raise not_found("model directory", path, folder=True)
    if not cfg.is_file():
        raise MirgError(
            f"{path} has no config.json (expected a local Qwen2.5-VL or Qwen2-VL checkpoint folder)"
        )
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except ValueError as e:
        raise MirgError(f"{cfg}: invalid JSON ({e})") from None
    if not isinstance(config, dict):
        raise MirgError(f"{cfg}: not a JSON object")
    model_type = config.get("model_type", "")
    if model_type not in FAMILIES:
        raise MirgError(
            f"{path}: unsupported model_type {model_type!r}; mirg handles {', '.join(FAMILIES)} checkpoints"
        )
    return model_type


def dialect_for(family: str) -> Dialect:
    """The answer dialect (and so the coordinate system) a model family speaks."""
    return get_dialect(FAMILIES[family])


def choose_device_dtype(device: str | None = None, dtype: str | None = None) -> tuple[Any, Any]:
    """(torch.device, torch.dtype): CUDA + bf16 when available (fp16 on GPUs without bf16), else CPU + fp32.

    ``device`` / ``dtype`` ("cuda", "cpu", "bfloat16", "float32", ...) override the automatic choice.
    """
    import torch

    try:
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    except RuntimeError:
        raise MirgError(f"unknown device {device!r}; use cuda, cuda:N or cpu") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MirgError(
            f"--device {device} but CUDA is not available here (no GPU or a CPU build of torch); use --device cpu"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise MirgError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible")
    if dtype:
        dt = getattr(torch, dtype, None)
        if not isinstance(dt, torch.dtype) or dt not in (torch.float32, torch.bfloat16, torch.float16):
            raise MirgError(f"--dtype {dtype!r}: use bfloat16, float16 or float32")
    elif dev.type == "cuda":
        dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dt = torch.float32
    return dev, dt


@dataclass
class LoadedModel:
    """A model ready for generation: the model (eval mode, on its device), its processor, family, dialect."""

    model: Any
    processor: Any
    family: str
    dialect: Dialect
    path: str
    device: Any
    dtype: Any


def load_processor(path: str | Path, **kwargs: Any) -> Any:
    """The image-only processor of a checkpoint folder (the family's class; no torchvision needed)."""
    family = family_of(path)
    register_processors()
    q25, q2 = processor_classes()
    cls = q25 if family == "qwen2_5_vl" else q2
    try:
        return cls.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as e:
        raise MirgError(f"cannot load the processor from {path}: {e}") from None


def load_model(
    path: str | Path,
    device: str | None = None,
    dtype: str | None = None,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load a local Qwen2.5-VL / Qwen2-VL checkpoint folder (safetensors) and its processor.

    Never uses remote code. Device and dtype as in :func:`choose_device_dtype`. The model is in eval mode.
    """
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    path = Path(path)
    family = family_of(path)
    processor = load_processor(path)
    dev, dt = choose_device_dtype(device, dtype)
    cls = Qwen2_5_VLForConditionalGeneration if family == "qwen2_5_vl" else Qwen2VLForConditionalGeneration
    kwargs: dict[str, Any] = {"dtype": dt, "use_safetensors": True}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = cls.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as e:
        raise MirgError(f"cannot load the model from {path}: {e}") from None
    model.to(dev)
    model.eval()
    return LoadedModel(model, processor, family, dialect_for(family), str(path), dev, dt)
