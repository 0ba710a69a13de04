"""The policy for training: load it (base model, full SFT checkpoint or LoRA adapter folder), freeze its vision
tower, build the LoRA config, or build an architecture on the meta device to validate a real-size config.

Models are local Qwen2.5-VL / Qwen2-VL folders or Hub ids (``Qwen/Qwen2.5-VL-7B-Instruct``; downloaded by
transformers on machines with network). Processors are the torchvision-free ones registered by
:func:`mirg.models.loading.register_processors`, so TRL sees a real multimodal processor.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirg.errors import MirgError

log = logging.getLogger(__name__)

# LoRA targets when the config names none: the attention and MLP projections (Qwen2/2.5-VL names).
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VISION_PREFIX = "visual"  # Qwen2-VL / Qwen2.5-VL vision tower (blocks + merger) module name


@dataclass
class Policy:
    model: Any
    processor: Any
    family: str  # qwen2_5_vl | qwen2_vl
    source: str  # what was loaded, for the log


def _model_type(path: str) -> str:
    if Path(path).is_dir():
        from mirg.models.loading import family_of

        return family_of(path)  # one line for a missing or unreadable config.json, or another family
    from transformers import AutoConfig

    try:
        model_type = AutoConfig.from_pretrained(path).model_type
    except (OSError, ValueError) as e:
        raise MirgError(f"model not found: {path} (not a local folder, and not loadable: {e})") from None
    if model_type not in ("qwen2_5_vl", "qwen2_vl"):
        raise MirgError(f"{path}: unsupported model_type {model_type!r}; mirg trains qwen2_5_vl, qwen2_vl")
    return model_type


def model_class(family: str) -> Any:
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration if family == "qwen2_5_vl" else Qwen2VLForConditionalGeneration


def _torch_dtype(name: str | None) -> Any:
    import torch

    if name in (None, "auto"):
        return "auto"
    dt = getattr(torch, name, None)
    if dt not in (torch.float32, torch.bfloat16, torch.float16):
        raise MirgError(f"dtype {name!r}: use auto, bfloat16, float16 or float32")
    return dt


def _load_processor(path: str) -> Any:
    from transformers import AutoProcessor

    from mirg.models.loading import register_processors

    register_processors()
    try:
        return AutoProcessor.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MirgError(f"cannot load the processor from {path}: {e}") from None


def load_policy(model_args: Any) -> Policy:
    """Model + processor from ``model_args`` (``trl.ModelConfig``): a checkpoint folder, a Hub id, or a LoRA
    adapter folder (from ``mirg sft`` with ``use_peft``), which is merged into its base model."""
    path = model_args.model_name_or_path
    if not path:
        raise MirgError("model_name_or_path is required (a checkpoint folder, a Hub id or an SFT output)")
    path = str(path)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(model_args.dtype)}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    adapter_cfg = Path(path) / "adapter_config.json"
    if adapter_cfg.is_file():
        from peft import PeftModel

        try:
            adapter = json.loads(adapter_cfg.read_text(encoding="utf-8"))
        except ValueError as e:
            raise MirgError(f"{adapter_cfg}: invalid JSON ({e})") from None
        base = adapter.get("base_model_name_or_path") if isinstance(adapter, dict) else None
        if not base:
            raise MirgError(f"{adapter_cfg}: no base_model_name_or_path")
        family = _model_type(base)
        model = model_class(family).from_pretrained(base, **kwargs)
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
        model.requires_grad_(True)  # PEFT froze the base weights; the merged model trains in full
        has_proc = (Path(path) / "preprocessor_config.json").is_file() or (
            Path(path) / "processor_config.json"
        ).is_file()
        processor = _load_processor(path if has_proc else base)
        return Policy(model, processor, family, f"LoRA adapter {path} merged into {base}")
    family = _model_type(path)
    try:
        model = model_class(family).from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise MirgError(f"cannot load the model from {path}: {e}") from None
    return Policy(model, _load_processor(path), family, path)


def freeze_vision(model: Any) -> int:
    """Stop gradients in the vision tower (patch embedding, blocks, merger); return how many parameters froze."""
    frozen = 0
    for name, p in model.named_parameters():
        if f"{VISION_PREFIX}." in name:
            p.requires_grad_(False)
            frozen += p.numel()
    if not frozen:
        log.warning("freeze_vision: no parameter named '%s.*' found; nothing frozen", VISION_PREFIX)
    return frozen


def lora_config(model_args: Any, freeze_vision: bool = False) -> Any:
    """``peft.LoraConfig`` from ``trl.ModelConfig`` (None unless ``use_peft``). With ``freeze_vision`` the targets
    exclude the vision tower, whose MLP shares the language model's projection names."""
    if not model_args.use_peft:
        return None
    from trl import get_peft_config

    targets = model_args.lora_target_modules or DEFAULT_LORA_TARGETS
    if isinstance(targets, str):
        targets = [targets]
    model_args.lora_target_modules = list(targets)
    cfg = get_peft_config(model_args)
    if freeze_vision and "all-linear" not in targets:
        names = "|".join(sorted(set(targets)))
        # PEFT full-matches a string target against every module name.
        cfg.target_modules = rf"^(?!.*\b{VISION_PREFIX}\b).*\.({names})$"
    elif freeze_vision:
        log.warning("freeze_vision with lora_target_modules=all-linear: LoRA also adapts the vision tower")
    return cfg


def trainable_summary(model: Any) -> str:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{trainable:,} of {total:,} parameters trainable ({100.0 * trainable / max(total, 1):.1f}%)"


def build_meta_model(config_json: str | Path) -> tuple[Any, int]:
    """Build the architecture in ``config_json`` on the meta device (no memory, no weights); return the model
    and its parameter count. Used to validate real-size configs on machines without a GPU."""
    import torch
    from transformers import AutoConfig

    p = Path(config_json)  # check_stage passes an existing file
    try:
        config = AutoConfig.from_pretrained(str(p))
    except (OSError, ValueError) as e:
        raise MirgError(f"{p}: not a valid model config ({e})") from None
    if config.model_type not in ("qwen2_5_vl", "qwen2_vl"):
        raise MirgError(f"{p}: unsupported model_type {config.model_type!r}")
    with torch.device("meta"):
        model = model_class(config.model_type)(config)
    return model, sum(p.numel() for p in model.parameters())
