"""Function-preserving growth of a checkpoint's text model (``python -m lab.tinybase --init DIR --grow-text WxL``).

A wider or deeper LLM is built from a trained smaller one so that, at the start, it computes *exactly* the same
function (the same logits, up to float rounding), and training continues from there instead of from random
weights (the idea of Net2Net, Chen et al. 2016, with zero-initialised outputs instead of duplicated units):

* **Width** ``h -> H`` (heads of the same ``head_dim``, the same query/key-value grouping, MLP ``intermediate``
  scaled by ``H / h``). The residual stream gets ``H - h`` new dimensions that start at zero: every weight that
  *writes* to them (token embeddings, attention output, MLP down projection, the vision merger's last layer) is
  zero there. Every weight that *reads* them, and every new head and MLP unit, is random (``N(0, 0.02)``), but
  the outputs of new heads and units are zero-weighted, so nothing changes until training moves those weights.
  RMSNorm divides by the root mean square over all ``H`` dimensions, so the old norm weights are scaled by
  ``sqrt(h / H)`` and its ``eps`` by ``h / H`` to give the same normalised values.
* **Depth** ``L -> L'``: new decoder layers are residual identities (random attention and MLP with zero output
  projections), spread evenly between the old ones.

Gradients reach everything new: a zero output projection gets a gradient from its (random, non-zero) inputs,
and the new residual dimensions get one through the random weights that read them.
``lab/tests/test_pretrain_grow.py`` checks both the identical logits and the gradients.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from mirg.errors import MirgError

STD = 0.02  # Qwen2's initializer_range


def _layer_map(old: int, new: int) -> list[int | None]:
    """For each new layer, the old layer it copies, or None for an inserted identity layer (spread evenly)."""
    out: list[int | None] = []
    inserted = 0
    for i in range(old):
        out.append(i)
        # insert after old layer i as many new layers as bring the total to round((i + 1) * new / old)
        target = round((i + 1) * new / old) - (i + 1)
        while inserted < target:
            out.append(None)
            inserted += 1
    return out


def grow_text(model_dir: str | Path, hidden: int, layers: int, seed: int = 0) -> dict[str, int]:
    """Grow the text model of the checkpoint in ``model_dir`` (in place) to ``hidden`` x ``layers``.

    Returns the old and new sizes. Raises MirgError when the target is smaller than the checkpoint or does not
    divide into heads of the checkpoint's ``head_dim``.
    """
    import torch
    from safetensors.torch import load_file, save_file

    model_dir = Path(model_dir)
    cfg_path, weights_path = model_dir / "config.json", model_dir / "model.safetensors"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    tc = cfg["text_config"]
    h, n_layers = tc["hidden_size"], tc["num_hidden_layers"]
    nq, nkv, inter = tc["num_attention_heads"], tc["num_key_value_heads"], tc["intermediate_size"]
    hd = tc.get("head_dim") or h // nq
    if hidden < h or layers < n_layers:
        raise MirgError(
            f"--grow-text {hidden}x{layers}: smaller than the checkpoint's text model {h}x{n_layers}"
        )
    if hidden % hd or (hidden // hd) % (nq // nkv) or (inter * hidden) % h:
        raise MirgError(
            f"--grow-text {hidden}x{layers}: the width must be a multiple of head_dim {hd} x the query groups "
            f"{nq // nkv} (e.g. {2 * h}), so that heads keep their size and grouping"
        )
    nq2 = hidden // hd
    nkv2 = nq2 // (nq // nkv)
    inter2 = inter * hidden // h
    w = load_file(str(weights_path))
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * STD

    def embed(old: torch.Tensor, rows: int, cols: int, fill_rows: str, fill_cols: str) -> torch.Tensor:
        """``old`` in the top-left corner of a (rows, cols) matrix; new rows/cols 'rand' or 'zero'."""
        out = torch.zeros(rows, cols, dtype=old.dtype)
        if fill_cols == "rand":
            out[:, old.shape[1] :] = rand(rows, cols - old.shape[1])
        if fill_rows == "rand":
            out[old.shape[0] :, :] = rand(rows - old.shape[0], cols)
        out[: old.shape[0], : old.shape[1]] = old
        return out

    def pad(old: torch.Tensor, n: int) -> torch.Tensor:
        return torch.cat([old, torch.zeros(n - old.shape[0], dtype=old.dtype)])

    norm_scale = math.sqrt(h / hidden)

    def norm(old: torch.Tensor) -> torch.Tensor:
        return torch.cat([old, old.new_ones(hidden - h) * old.mean()]) * norm_scale

    def widen_layer(p: str, src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        a, m = "self_attn.", "mlp."
        return {
            # reads the residual stream (new columns random), new heads random
            p + a + "q_proj.weight": embed(src[a + "q_proj.weight"], nq2 * hd, hidden, "rand", "rand"),
            p + a + "k_proj.weight": embed(src[a + "k_proj.weight"], nkv2 * hd, hidden, "rand", "rand"),
            p + a + "v_proj.weight": embed(src[a + "v_proj.weight"], nkv2 * hd, hidden, "rand", "rand"),
            p + a + "q_proj.bias": pad(src[a + "q_proj.bias"], nq2 * hd),
            p + a + "k_proj.bias": pad(src[a + "k_proj.bias"], nkv2 * hd),
            p + a + "v_proj.bias": pad(src[a + "v_proj.bias"], nkv2 * hd),
            # writes the residual stream: new rows (dims) and new columns (heads) zero
            p + a + "o_proj.weight": embed(src[a + "o_proj.weight"], hidden, nq2 * hd, "zero", "zero"),
            p + m + "gate_proj.weight": embed(src[m + "gate_proj.weight"], inter2, hidden, "rand", "rand"),
            p + m + "up_proj.weight": embed(src[m + "up_proj.weight"], inter2, hidden, "rand", "rand"),
            p + m + "down_proj.weight": embed(src[m + "down_proj.weight"], hidden, inter2, "zero", "zero"),
            p + "input_layernorm.weight": norm(src["input_layernorm.weight"]),
            p + "post_attention_layernorm.weight": norm(src["post_attention_layernorm.weight"]),
        }

    def identity_layer() -> dict[str, torch.Tensor]:
        """A new layer's weights at the old width, zero outputs (the residual passes through unchanged)."""
        return {
            "self_attn.q_proj.weight": rand(nq * hd, h), "self_attn.q_proj.bias": torch.zeros(nq * hd),
            "self_attn.k_proj.weight": rand(nkv * hd, h), "self_attn.k_proj.bias": torch.zeros(nkv * hd),
            "self_attn.v_proj.weight": rand(nkv * hd, h), "self_attn.v_proj.bias": torch.zeros(nkv * hd),
            "self_attn.o_proj.weight": torch.zeros(h, nq * hd),
            "mlp.gate_proj.weight": rand(inter, h), "mlp.up_proj.weight": rand(inter, h),
            "mlp.down_proj.weight": torch.zeros(h, inter),
            "input_layernorm.weight": torch.ones(h), "post_attention_layernorm.weight": torch.ones(h),
        }  # fmt: skip

    out: dict[str, torch.Tensor] = {}
    for k, v in w.items():
        if not k.startswith("model.layers."):
            out[k] = v
    for new_i, old_i in enumerate(_layer_map(n_layers, layers)):
        pre = f"model.layers.{old_i}."
        src = (
            {k[len(pre) :]: v for k, v in w.items() if k.startswith(pre)}
            if old_i is not None
            else identity_layer()
        )
        out.update(widen_layer(f"model.layers.{new_i}.", src))
    out["model.embed_tokens.weight"] = embed(w["model.embed_tokens.weight"], w["model.embed_tokens.weight"].shape[0],
                                             hidden, "zero", "zero")  # fmt: skip
    if "lm_head.weight" in w:  # absent when tied to the embeddings (which then read the new dims as zero too)
        out["lm_head.weight"] = embed(
            w["lm_head.weight"], w["lm_head.weight"].shape[0], hidden, "zero", "rand"
        )
    out["model.norm.weight"] = norm(w["model.norm.weight"])
    last = "visual.merger.mlp.2."
    if last + "weight" not in w:
        raise MirgError(f"{weights_path}: no {last}weight (not a Qwen2.5-VL merger); cannot widen its output")
    out[last + "weight"] = embed(w[last + "weight"], hidden, w[last + "weight"].shape[1], "zero", "zero")
    out[last + "bias"] = pad(w[last + "bias"], hidden)

    # rsqrt(mean(x^2) + eps) over H dims of which h are non-zero: scaling eps by h / H as well makes the old
    # norms' outputs identical, not just close (the embeddings' scale is small enough for eps to matter)
    tc["rms_norm_eps"] = tc.get("rms_norm_eps", 1e-6) * h / hidden
    tc.update(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=nq2, num_key_value_heads=nkv2,
              intermediate_size=inter2, layer_types=["full_attention"] * layers)  # fmt: skip
    if "head_dim" in tc:
        tc["head_dim"] = hd
    cfg["vision_config"]["out_hidden_size"] = hidden
    save_file({k: v.contiguous() for k, v in out.items()}, str(weights_path), metadata={"format": "pt"})
    cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return {"from_hidden": h, "from_layers": n_layers, "hidden": hidden, "layers": layers}


def new_vision(model_dir: str | Path, size: str, seed: int = 0) -> dict[str, int]:
    """Replace the checkpoint's vision tower + merger (in place) by freshly initialised ones of preset ``size``
    (:data:`lab.tinybase.model.PRESETS`), keeping the text model, tokenizer and chat template; the processor's
    merge size follows the new tower. For changing how an image becomes tokens (e.g. ``base-m8`` -> ``base-m4``:
    4 x 4 tokens at 224 px instead of 2 x 2) without relearning language, the answer format and the digits.
    The new tokens mean nothing yet, so a vision stage (``--vision-steps``) should follow. Returns the old and
    new merge sizes and widths."""
    import tempfile

    from safetensors.torch import load_file, save_file

    from lab.tinybase.model import PRESETS, build_model_dir
    from mirg.models.loading import load_processor

    if size not in PRESETS:
        raise MirgError(f"--new-vision {size!r}: choose a preset with a vision config ({', '.join(PRESETS)})")
    model_dir = Path(model_dir)
    cfg_path, weights_path = model_dir / "config.json", model_dir / "model.safetensors"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    hidden = cfg["text_config"]["hidden_size"]
    with tempfile.TemporaryDirectory() as tmp:
        src = build_model_dir(Path(tmp) / "m", size, seed=seed)
        new_cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
        if new_cfg["vision_config"]["out_hidden_size"] != hidden:
            raise MirgError(
                f"--new-vision {size}: its merger writes {new_cfg['vision_config']['out_hidden_size']}-wide tokens, "
                f"the checkpoint's text model is {hidden} wide"
            )
        fresh = {
            k: v for k, v in load_file(str(src / "model.safetensors")).items() if k.startswith("visual.")
        }
    old = cfg["vision_config"]
    before = {"from_merge": old.get("spatial_merge_size", 2), "from_width": old["hidden_size"]}
    w = {k: v for k, v in load_file(str(weights_path)).items() if not k.startswith("visual.")}
    w.update(fresh)
    cfg["vision_config"] = new_cfg["vision_config"]
    save_file({k: v.contiguous() for k, v in w.items()}, str(weights_path), metadata={"format": "pt"})
    cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    merge = cfg["vision_config"].get("spatial_merge_size", 2)
    processor = load_processor(model_dir)
    processor.image_processor.merge_size = merge
    processor.save_pretrained(str(model_dir))
    return {**before, "merge": merge, "width": cfg["vision_config"]["hidden_size"]}
