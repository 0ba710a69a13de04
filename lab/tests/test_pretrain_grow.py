"""--grow-text / --new-vision of the tiny base's pretraining: a grown checkpoint computes the same logits, and training reaches what is new."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lab.tinybase.config import parse_grow
from lab.tinybase.grow import _layer_map, grow_text
from mirg.errors import MirgError


def _batch(processor):
    from lab.tinybase.batching import collate
    from lab.tinybase.data import batch_samples
    from lab.tinybase.perception import DataConfig

    batch = collate(processor, batch_samples(0, 7, 4, DataConfig(), 0.9))
    labels = batch.pop("labels")
    return batch, labels


@pytest.fixture(scope="module")
def grown(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny model (128 x 2) and a copy grown to 256 x 3, both loaded, with one batch."""
    import torch

    from mirg.models.loading import load_model

    src = load_model(tiny_model_dir)
    out = tmp_path_factory.mktemp("grown") / "m"
    shutil.copytree(tiny_model_dir, out)
    sizes = grow_text(out, 256, 3, seed=1)
    big = load_model(out)
    batch, labels = _batch(src.processor)
    with torch.no_grad():
        before, after = src.model(**batch).logits, big.model(**batch).logits
    return {"sizes": sizes, "dir": out, "model": big.model, "batch": batch, "labels": labels,
            "before": before, "after": after}  # fmt: skip


def test_grown_model_computes_the_same_logits(grown):
    assert grown["sizes"] == {"from_hidden": 128, "from_layers": 2, "hidden": 256, "layers": 3}
    cfg = json.loads((grown["dir"] / "config.json").read_text())
    text = cfg["text_config"]
    assert (text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"]) == (256, 3, 8)
    assert (text["num_key_value_heads"], text["intermediate_size"]) == (4, 512)
    assert cfg["vision_config"]["out_hidden_size"] == 256
    assert grown["model"].config.text_config.hidden_size == 256
    # the same answers, not just similar ones (without the eps scaling the difference was 0.3 on the shipped base)
    diff = (grown["before"] - grown["after"]).abs().max().item()
    assert diff < 1e-4, diff
    assert grown["before"].abs().max().item() > 0.1  # the comparison is not between two zero tensors


def test_grow_text_keeps_a_tied_checkpoint_tied_and_exact(tiny_model_dir: Path, tmp_path: Path):
    """A checkpoint with tied word embeddings has no lm_head.weight: the grown one stays tied (the widened
    embeddings are the output layer too) and computes the same logits."""
    import torch
    from safetensors import safe_open
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from mirg.models.loading import load_model

    tied = tmp_path / "tied"
    shutil.copytree(tiny_model_dir, tied)
    cfg = json.loads((tied / "config.json").read_text())
    cfg["tie_word_embeddings"] = cfg["text_config"]["tie_word_embeddings"] = True
    (tied / "config.json").write_text(json.dumps(cfg))
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_pretrained(str(tied))).save_pretrained(str(tied))
    with safe_open(str(tied / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys()  # noqa: SIM118 (safe_open has no __contains__)
    src = load_model(tied)
    out = tmp_path / "grown"
    shutil.copytree(tied, out)
    grow_text(out, 256, 3, seed=1)
    big = load_model(out)
    lm, emb = big.model.lm_head.weight, big.model.model.language_model.embed_tokens.weight
    assert lm.shape[1] == 256 and lm.data_ptr() == emb.data_ptr()
    batch, _ = _batch(src.processor)
    with torch.no_grad():
        diff = (src.model(**batch).logits - big.model(**batch).logits).abs().max().item()
    assert diff < 1e-4, diff


def test_training_reaches_the_new_heads_units_dimensions_and_layers(grown):
    model = grown["model"]
    model.train()
    model.zero_grad()
    model(**grown["batch"], labels=grown["labels"]).loss.backward()
    model.eval()
    p = dict(model.named_parameters())

    def g(name: str):
        return p[name].grad.abs()

    lm = "model.language_model." if any(k.startswith("model.language_model.") for k in p) else "model."
    # weights that write the new residual dimensions (zero now) get a gradient through the random readers
    assert g(f"{lm}layers.0.self_attn.o_proj.weight")[128:].sum() > 0
    assert g(f"{lm}layers.0.mlp.down_proj.weight")[128:].sum() > 0
    assert g(f"{lm}embed_tokens.weight")[:, 128:].sum() > 0
    merger = next(k for k in p if k.endswith("merger.mlp.2.weight"))
    assert g(merger)[128:].sum() > 0
    # the outputs of new heads and MLP units (zero now) get a gradient from their random activations
    assert g(f"{lm}layers.0.self_attn.o_proj.weight")[:, 128:].sum() > 0
    assert g(f"{lm}layers.0.mlp.down_proj.weight")[:, 256:].sum() > 0
    # the inserted identity layer (new index 1) learns as well
    assert g(f"{lm}layers.1.self_attn.o_proj.weight").sum() > 0
    assert g(f"{lm}layers.1.mlp.down_proj.weight").sum() > 0


def test_layer_map_spreads_new_layers_between_the_old_ones():
    assert _layer_map(3, 3) == [0, 1, 2]
    assert _layer_map(3, 6) == [0, None, 1, None, 2, None]
    assert _layer_map(3, 4) == [0, 1, None, 2]
    assert [i for i in _layer_map(2, 5) if i is not None] == [0, 1]


def test_grow_rejects_what_it_cannot_preserve(tiny_model_dir: Path, tmp_path: Path):
    out = tmp_path / "m"
    shutil.copytree(tiny_model_dir, out)
    with pytest.raises(MirgError, match="smaller"):
        grow_text(out, 64, 2)
    with pytest.raises(MirgError, match="head_dim 32"):
        grow_text(out, 160, 2)  # 5 query heads cannot keep 2 per key-value head
    assert parse_grow("256x4") == (256, 4) and parse_grow(" 192 X 3 ") == (192, 3)
    with pytest.raises(MirgError, match="WIDTHxLAYERS"):
        parse_grow("256")


def test_grow_text_needs_init_and_parses_on_the_command_line(tmp_path: Path):
    from lab.tinybase.config import parse

    with pytest.raises(MirgError, match="--init"):
        parse(None, ["--out", str(tmp_path / "r"), "--steps", "2", "--grow-text", "256x4"])
    cfg = parse(None, ["--out", "x", "--steps", "2", "--init", "y", "--grow-text", "256x4"])
    assert parse_grow(cfg.grow_text) == (256, 4)
    with pytest.raises(MirgError, match="--grow-text"):
        parse(None, ["--out", "x", "--steps", "2", "--init", "y", "--grow-text", "wide"])


def test_new_vision_swaps_the_tower_and_keeps_the_text_model(tmp_path: Path):
    """--new-vision base-m4: the image becomes 4 x 4 tokens of a new tower (224 px), the text model is the
    checkpoint's own (identical logits on a text-only prompt), and the processor's merge size follows."""
    import torch
    from safetensors.torch import load_file

    from lab.tinybase.grow import new_vision
    from lab.tinybase.model import build_model_dir
    from mirg.models.loading import load_model

    src = build_model_dir(tmp_path / "src", "base-m8", seed=0)
    out = tmp_path / "m"
    shutil.copytree(src, out)
    assert new_vision(out, "base-m4", seed=1) == {"from_merge": 8, "from_width": 32, "merge": 4, "width": 64}
    a, b = load_model(src), load_model(out)
    assert b.processor.image_processor.merge_size == 4
    enc = b.processor(text=["<|im_start|>user\nLocate the red circle.<|im_end|>\n"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(a.model(**enc).logits, b.model(**enc).logits)
    old, new = load_file(str(src / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert all(torch.equal(old[k], new[k]) for k in old if not k.startswith("visual."))
    assert new["visual.merger.mlp.0.weight"].shape == (16 * 64, 16 * 64)
    from PIL import Image

    img = Image.new("RGB", (224, 224), (200, 30, 30))
    grid = b.processor.image_processor(images=[img], return_tensors="pt")["image_grid_thw"]
    with torch.no_grad():
        tokens = b.model.model.visual(
            b.processor.image_processor(images=[img], return_tensors="pt")["pixel_values"], grid_thw=grid
        ).pooler_output
    assert tokens.shape == (16, 128)
    with pytest.raises(MirgError, match="preset"):
        new_vision(out, "tiny")
    from lab.tinybase.config import PretrainConfig

    with pytest.raises(MirgError, match="--init"):
        PretrainConfig(out=str(tmp_path / "r"), steps=1, new_vision="base-m4").validate()
