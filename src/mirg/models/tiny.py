"""Build a tiny Qwen2.5-VL checkpoint offline: locally trained tokenizer, image processor, random weights.

The result is an ordinary checkpoint folder (``config.json``, ``model.safetensors``, tokenizer and processor
files, TRL's shipped Qwen2.5-VL chat template) that :func:`mirg.models.loading.load_model` and plain
``from_pretrained`` load like a real one. Same code path as Qwen2.5-VL-3B/7B, smaller sizes.

Deterministic: the same ``size`` and ``seed`` give byte-identical files.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path
from typing import Any

from mirg.errors import MirgError

# Qwen2.5-VL's special tokens, in the original order (ids follow the learned vocabulary here).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Architecture per size. Image processor pixels keep CPU runs quick (a 112 px image is 16 vision tokens).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "vocab": 768,
        "text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "mrope_section": [4, 6, 6]},
        "vision": {"depth": 2, "hidden_size": 96, "intermediate_size": 192, "num_heads": 4,
                   "fullatt_block_indexes": [1]},
    },
    "small": {
        "vocab": 2048,
        "text": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 8,
                 "num_key_value_heads": 2, "mrope_section": [4, 6, 6]},
        "vision": {"depth": 4, "hidden_size": 192, "intermediate_size": 384, "num_heads": 4,
                   "fullatt_block_indexes": [1, 3]},
    },
}  # fmt: skip
MIN_PIXELS = 56 * 56
MAX_PIXELS = 224 * 224


def trl_chat_template() -> str:
    """TRL's shipped Qwen2.5-VL chat template (the original Qwen one), read without importing trl."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise MirgError("trl is not installed; it ships the Qwen2.5-VL chat template the tiny model uses")
    path = Path(next(iter(spec.submodule_search_locations))) / "chat_templates" / "qwen2_5_vl.jinja"
    if not path.is_file():
        raise MirgError(f"TRL's Qwen2.5-VL chat template is missing: {path}")
    return path.read_text(encoding="utf-8")


def _corpus() -> list[str]:
    """Text in the shape of mirg prompts and answers (fixed; the tokenizer does not depend on the seed)."""
    rng = random.Random(0)
    # "find" is listed twice: the corpus, and so the tokenizer of every built checkpoint, must not change
    words = (  # noqa: SIM905 (a word list as text; a list literal formats one word per line)
        "the a an of in on at to is are which image images object objects box left right top bottom above "
        "below same different red green blue yellow purple orange black white gray circle square triangle "
        "star small large big find locate where what find count shows contains compare look first second "
        "third fourth scene view from another other than and or not with without there this that it its "
        "reasoning answer question target reference marked person car dog cat chair table bird cup bottle"
    ).split()
    lines = []
    for _ in range(3000):
        k = rng.randint(1, 6)
        box = sorted(rng.sample(range(0, 1000), 2)) + sorted(rng.sample(range(0, 1000), 2))
        x1, x2, y1, y2 = box
        phrase = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
        lines.append(f"Image-{k}: {phrase}?")
        lines.append(
            f'<think>{phrase}.</think>\n<answer>{{"image": {k}, "bbox_2d": [{x1}, {y1}, {x2}, {y2}]}}</answer>'
        )
        lines.append(f"<answer>Image-{k} <|box_start|>({x1},{y1}),({x2},{y2})<|box_end|></answer>")
    lines.append("You are a helpful assistant.")
    return lines


def build_tokenizer(vocab_size: int) -> Any:
    """A byte-level BPE (Qwen2's pre-tokenizer: digits split one by one) trained on :func:`_corpus`."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    bpe = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in bpe["merges"]]
    qtok = Qwen2Tokenizer(
        vocab=bpe["vocab"],
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=32768,
        split_special_tokens=False,
    )
    qtok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    qtok.chat_template = trl_chat_template()
    return qtok


def build_tiny_model(out: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-VL checkpoint to ``out`` and return its path. Byte-identical per (size, seed)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from mirg.models.loading import processor_classes

    if size not in SIZES:
        raise MirgError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    spec = SIZES[size]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(spec["vocab"])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64  # round up to a multiple of 64, as real checkpoints do

    text = dict(spec["text"])
    mrope = text.pop("mrope_section")
    config = Qwen2_5_VLConfig(
        text_config={
            **text,
            "vocab_size": vocab_size,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            **spec["vision"],
            "out_hidden_size": text["hidden_size"],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    model.save_pretrained(str(out), safe_serialization=True)

    image_processor = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    processor = processor_classes()[0](image_processor, tokenizer, chat_template=tokenizer.chat_template)
    processor.save_pretrained(str(out))
    return out


def count_parameters(path: str | Path) -> int:
    """Number of parameters stored in a checkpoint folder's safetensors files (read from headers only)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(f), "np") as st:
            for k in st.keys():  # noqa: SIM118 (safe_open is not a dict)
                total += math.prod(st.get_slice(k).get_shape())
    return total


def describe(path: str | Path) -> str:
    """One line: where the checkpoint is and what it holds."""
    cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    text = cfg.get("text_config", cfg)
    return (
        f"wrote {path}: {cfg.get('model_type')} with {count_parameters(path):,} parameters "
        f"(text hidden {text.get('hidden_size')} x {text.get('num_hidden_layers')} layers, "
        f"vocab {text.get('vocab_size')}), image pixels {MIN_PIXELS}..{MAX_PIXELS}"
    )
