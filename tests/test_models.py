"""The tiny model builder and checkpoint loading (no torchvision, no remote code)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from mirg.errors import MirgError


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_tiny_model_is_deterministic_per_seed(tiny_model_dir, tmp_path):
    from mirg.models.tiny import build_tiny_model

    again = build_tiny_model(tmp_path / "again", seed=0)
    assert _digests(again) == _digests(tiny_model_dir)
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert _digests(other)["model.safetensors"] != _digests(tiny_model_dir)["model.safetensors"]
    assert _digests(other)["tokenizer.json"] == _digests(tiny_model_dir)["tokenizer.json"]


def test_tiny_model_shape(tiny_model_dir):
    from mirg.models.tiny import count_parameters

    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    assert cfg["model_type"] == "qwen2_5_vl"
    assert cfg["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert "auto_map" not in cfg  # nothing remote
    assert 0.5e6 < count_parameters(tiny_model_dir) < 2e6
    assert (tiny_model_dir / "model.safetensors").is_file()
    assert not list(tiny_model_dir.glob("*.bin"))


def test_plain_from_pretrained_loads_it(tiny_model_dir):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from mirg.models.loading import register_processors
    from mirg.models.tiny import SPECIAL_TOKENS, trl_chat_template

    register_processors()
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(processor).__name__ == "MirgQwen2_5_VLProcessor"
    assert hasattr(processor, "image_processor") and not hasattr(processor, "video_processor")
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    tok = processor.tokenizer
    for t in SPECIAL_TOKENS:
        assert tok.tokenize(t) == [t]
        assert tok.convert_tokens_to_ids(t) < model.config.text_config.vocab_size
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert processor.chat_template == trl_chat_template()
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_trl_recognises_the_chat_template(tiny_model):
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    assert tiny_model.processor.chat_template == qwen2_5_vl_chat_template


def test_load_model_picks_family_device_dtype(tiny_model):
    import torch

    assert tiny_model.family == "qwen2_5_vl"
    assert tiny_model.dialect.name == "qwen2_5_vl"
    if not torch.cuda.is_available():
        assert tiny_model.device.type == "cpu" and tiny_model.dtype == torch.float32
        assert next(tiny_model.model.parameters()).dtype == torch.float32
    assert not tiny_model.model.training


def test_stock_processor_class_name_still_loads(tiny_model_dir, tmp_path):
    """Real checkpoints name the stock Qwen2_5_VLProcessor (whose video part needs torchvision)."""
    from mirg.models.loading import load_processor

    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, copy)
    for name in ("processor_config.json", "tokenizer_config.json"):
        p = copy / name
        p.write_text(p.read_text().replace("MirgQwen2_5_VLProcessor", "Qwen2_5_VLProcessor"))
    processor = load_processor(copy)
    assert type(processor).__name__ == "MirgQwen2_5_VLProcessor"


def test_family_detection(tmp_path):
    from mirg.models.loading import dialect_for, family_of

    (tmp_path / "q2").mkdir()
    (tmp_path / "q2" / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    assert family_of(tmp_path / "q2") == "qwen2_vl"
    assert dialect_for("qwen2_vl").name == "qwen2_vl"
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(MirgError, match="unsupported model_type 'llama'"):
        family_of(tmp_path / "llama")
    with pytest.raises(MirgError, match="not found"):
        family_of(tmp_path / "nowhere")
    with pytest.raises(MirgError, match=r"no config\.json"):
        family_of(tmp_path)


def test_choose_device_dtype_overrides():
    import torch

    from mirg.models.loading import choose_device_dtype

    assert choose_device_dtype("cpu") == (torch.device("cpu"), torch.float32)
    assert choose_device_dtype("cpu", "bfloat16")[1] == torch.bfloat16
    for bad in ("float99", "float8_e4m3fn", "int8", "bool"):  # float8 once ended in a torch TypeError
        with pytest.raises(MirgError, match="use bfloat16, float16 or float32"):
            choose_device_dtype("cpu", bad)


def test_tiny_model_cli(tmp_path, capsys):
    from mirg.cli import main

    assert main(["tiny-model", "--out", str(tmp_path / "m"), "--seed", "3"]) == 0
    assert "parameters" in capsys.readouterr().out
    assert (tmp_path / "m" / "model.safetensors").is_file()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_a_bad_config_or_adapter_config_is_one_line_when_training(tmp_path, text):
    """A checkpoint (or LoRA adapter) folder whose config file is not a JSON object: one MirgError line from the
    training loader, not a JSONDecodeError or AttributeError traceback."""
    from types import SimpleNamespace

    from mirg.training.modeling import load_policy

    args = SimpleNamespace(model_name_or_path=str(tmp_path), dtype=None, attn_implementation=None)
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(MirgError, match=r"config\.json"):
        load_policy(args)
    (tmp_path / "adapter_config.json").write_text(text)
    with pytest.raises(MirgError, match=r"adapter_config\.json"):
        load_policy(args)
