"""Architecture presets for the perception base: ``tiny``/``small`` are :func:`mirg.models.tiny.build_tiny_model`'s;
``base``, ``base-m8`` (the shipped base's first run) and ``base-m4`` (the vision tower it has now) are built here
from the tiny checkpoint's tokenizer and processor with different widths/depths (same Qwen2.5-VL architecture, same 768-entry tokenizer, digits split one by one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mirg.errors import MirgError
from mirg.models.tiny import SIZES as TINY_SIZES
from mirg.models.tiny import build_tiny_model

# Overrides of the tiny preset's text/vision configs (head_dim 32 everywhere, so mrope [4, 6, 6] still fits).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "base": {
        "text": {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 3, "num_attention_heads": 4,
                 "num_key_value_heads": 2},
        "vision": {"depth": 3, "hidden_size": 128, "intermediate_size": 256, "num_heads": 4,
                   "fullatt_block_indexes": [1, 2]},
    },
    # One merged token per 112 px block (spatial_merge_size 8): the merger concatenates the 8 x 8 patches in a
    # fixed order, so an object's position is in the token's content, not only in (relative) RoPE positions.
    "base-m8": {
        "text": {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 3, "num_attention_heads": 4,
                 "num_key_value_heads": 2},
        "vision": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                   "fullatt_block_indexes": [0, 1], "spatial_merge_size": 8},
    },
    # One merged token per 56 px block (merge 4): at 224 px, 4 x 4 tokens, so most objects have a token of their
    # own; a wider tower (64) keeps the merger's input (16 patches x 64) at half of base-m8's (64 x 32).
    "base-m4": {
        "text": {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 3, "num_attention_heads": 4,
                 "num_key_value_heads": 2},
        "vision": {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
                   "fullatt_block_indexes": [0, 1], "spatial_merge_size": 4},
    },
}  # fmt: skip
SIZE_CHOICES = (*TINY_SIZES, *PRESETS)


def build_model_dir(out: str | Path, size: str = "base", seed: int = 0) -> Path:
    """Write a randomly initialised checkpoint of preset ``size`` to ``out`` (deterministic per size and seed)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if size in TINY_SIZES:
        return build_tiny_model(out, size=size, seed=seed)
    if size not in PRESETS:
        raise MirgError(f"unknown --size {size!r}; choose from {', '.join(SIZE_CHOICES)}")
    out = build_tiny_model(out, size="tiny", seed=seed)
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["text_config"].update(PRESETS[size]["text"])
    cfg["text_config"]["layer_types"] = ["full_attention"] * cfg["text_config"]["num_hidden_layers"]
    cfg["vision_config"].update(PRESETS[size]["vision"])
    cfg["vision_config"]["out_hidden_size"] = cfg["text_config"]["hidden_size"]
    cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    merge = cfg["vision_config"].get("spatial_merge_size", 2)
    if merge != 2:
        from mirg.models.loading import load_processor

        processor = load_processor(out)
        processor.image_processor.merge_size = merge
        processor.save_pretrained(str(out))
    config = Qwen2_5_VLConfig.from_pretrained(str(out))
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    ids = cfg["text_config"]
    model.generation_config.eos_token_id = [ids["eos_token_id"], ids["pad_token_id"]]
    model.generation_config.pad_token_id = ids["pad_token_id"]
    model.generation_config.do_sample = False
    model.save_pretrained(str(out), safe_serialization=True)
    return out
