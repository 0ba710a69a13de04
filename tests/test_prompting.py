"""The one prompt builder and the resized-size helpers."""

from __future__ import annotations

import pytest

from mirg.prompting import (
    build_messages,
    instruction,
    prompt_text,
    resized_size,
    resized_sizes,
    target_completion,
)
from mirg.sample import Sample


def _sample(n: int = 3) -> Sample:
    return Sample(id="a", task="t", images=[f"{k}.png" for k in range(n)], question="  Where is the red circle? ",
                  target_image=2, target_box=(0.1, 0.2, 0.5, 0.6))  # fmt: skip


@pytest.mark.parametrize("dialect", ["qwen2_5_vl", "qwen2_vl"])
def test_messages_interleave_labels_and_images(dialect):
    msgs = build_messages(_sample(3), dialect)
    assert [m["role"] for m in msgs] == ["user"]
    parts = msgs[0]["content"]
    assert [p["type"] for p in parts] == ["text", "image", "text", "image", "text", "image", "text"]
    assert [p["text"].strip() for p in parts[0:6:2]] == ["Image-1:", "Image-2:", "Image-3:"]
    assert parts[-1]["text"] == "\nWhere is the red circle?\n" + instruction(dialect)
    assert "<think></think>" in instruction(dialect) and "<answer></answer>" in instruction(dialect)


def test_instruction_names_the_dialect():
    assert "bbox_2d" in instruction("qwen2_5_vl") and "pixels" in instruction("qwen2_5_vl")
    assert "<|box_start|>" in instruction("qwen2_vl") and "[0, 1000)" in instruction("qwen2_vl")


def test_completion_turn_and_system():
    msgs = build_messages(_sample(2), "qwen2_5_vl", completion="<think>x</think>", system="sys")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[-1]["content"] == [{"type": "text", "text": "<think>x</think>"}]


def test_chat_template_renders_labels_before_each_image(tiny_model):
    text = prompt_text(tiny_model.processor, build_messages(_sample(2), tiny_model.dialect))
    vision = "<|vision_start|><|image_pad|><|vision_end|>"
    assert f"Image-1: {vision}\nImage-2: {vision}\nWhere is the red circle?" in text
    assert text.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("wh", [(100, 100), (57, 203), (230, 61), (224, 224), (300, 41), (1000, 700)])
def test_resized_size_matches_the_processor(tiny_model, wh):
    from PIL import Image

    inputs = tiny_model.processor.image_processor(images=[Image.new("RGB", wh)], return_tensors="pt")
    assert resized_sizes(inputs["image_grid_thw"].tolist()) == [resized_size(wh, tiny_model.processor)]


def test_target_completion_round_trips():
    from mirg.answers import get_dialect

    s = _sample(3)
    for name, wh in (("qwen2_5_vl", (224, 168)), ("qwen2_vl", None)):
        d = get_dialect(name)
        text = target_completion(s, name, "because", wh)
        assert d.check_answer(d.parse(text), 3, wh) == ""
        ans = d.parse(text)
        assert ans.image == 2
        assert d.to_normalized(ans.box, wh) == pytest.approx(s.target_box, abs=1 / 200)
