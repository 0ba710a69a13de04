"""Which rotary dimensions does a perception checkpoint's LLM match image content with, when it writes a box?

mRoPE gives each attention head's rotary pairs to three sections, highest frequencies first: temporal, height,
width (``mrope_section``, [4, 6, 6] pairs for head_dim 32). A query in the answer and an image token's key are
rotated by their position difference, which changes from sample to sample with the question's length, so a pair
can match *what* a token shows only if it turns slowly. On the held-out referring scenes of ``python -m lab.tinybase``
(seed + 1,000,003, short prompt, first question), with the reference answer fed in, this takes the last decoder
layer's queries at the position that predicts the box's first digit and the keys of the image tokens, and splits
each head's logit margin of the named object's token (its logit minus the mean of the other image tokens') into
the three sections, with the rotation applied and without it (content only), by the attributes the expression
names. It also reports how often the head's logits peak at the target token, and checks that the split adds up
to the margin in the model's own attention weights. Round sixteen in lab/NOTES.md.

    python -m lab.probes.rope_probe assets/tiny_base --n 400
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path


def sections(mrope_section: list[int]) -> dict[str, range]:
    """Rotary pair indices of the temporal, height and width sections (transformers' Qwen2.5-VL layout)."""
    t, h, _ = mrope_section
    return {"temporal": range(0, t), "height": range(t, t + h), "width": range(t + h, sum(mrope_section))}


def main(argv: list[str] | None = None) -> int:
    from lab.probes import _probe

    args = _probe.parser(__doc__, 400).parse_args(argv)

    import torch
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb

    from lab.tinybase.evaluate import expression_family

    model, proc, scenes = _probe.load(args)
    text_cfg = model.config.text_config
    attn = model.model.language_model.layers[text_cfg.num_hidden_layers - 1].self_attn
    caught: dict[str, object] = {}

    def catch(_module: object, args_: tuple, kwargs: dict) -> None:
        caught["hidden"] = kwargs.get("hidden_states", args_[0] if args_ else None)
        caught["rope"] = kwargs["position_embeddings"]

    attn.register_forward_pre_hook(catch, with_kwargs=True)
    heads, dim, groups = attn.num_heads, attn.head_dim, attn.num_key_value_groups
    half = dim // 2
    secs = sections(list(text_cfg.rope_parameters["mrope_section"]))
    # (rotation, expression) -> figure -> per-scene [heads] tensors
    acc: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    check: list[float] = []
    for chunk, batch, first_tg in _probe.batches(proc, scenes):
        with torch.no_grad():
            weights = model(**batch, output_attentions=True).attentions[-1]  # [B, H, T, T], after softmax
            h = caught["hidden"]
            cos, sin = caught["rope"]
            b, t, _ = h.shape
            q = attn.q_proj(h).view(b, t, heads, dim).transpose(1, 2)
            k = attn.k_proj(h).view(b, t, -1, dim).transpose(1, 2)
            q_rot, k_rot = apply_rotary_pos_emb(q, k, cos, sin)
            k, k_rot = k.repeat_interleave(groups, 1), k_rot.repeat_interleave(groups, 1)
        for j in range(len(chunk)):
            row, pos, target = int(first_tg["rows"][j]), int(first_tg["pos"][j]), int(first_tg["target"][j])
            img = first_tg["image_pos"][j]
            img = img[img >= 0]
            expr = expression_family(chunk[j].meta["expressions"][0])
            others = torch.ones(len(img), dtype=torch.bool)
            others[target] = False
            for how, (qq, kk) in (("rotated", (q_rot, k_rot)), ("content only", (q, k))):
                qv, kv = qq[row, :, pos], kk[row, :, img]  # [H, D], [H, G, D]
                per_pair = (
                    qv[:, None, :half] * kv[..., :half] + qv[:, None, half:] * kv[..., half:]
                ) * attn.scaling
                margin = per_pair[:, target] - per_pair[:, others].mean(1)  # [H, pairs]
                for name, idx in secs.items():
                    acc[(how, expr)][name].append(margin[:, list(idx)].sum(-1))
                acc[(how, expr)]["total"].append(margin.sum(-1))
                if how == "rotated":  # the split adds up to the model's own margin: log-softmax differences
                    logw = weights[row, :, pos, img].clamp(min=1e-30).log()  # [H, G]
                    own = logw[:, target] - logw[:, others].mean(1)
                    check.append(float((own - margin.sum(-1)).abs().max()))
                acc[(how, expr)]["peaks_at_target"].append((per_pair.sum(-1).argmax(-1) == target).float())
    for how in ("rotated", "content only"):  # all expressions together
        for key in [k for k in list(acc) if k[0] == how]:
            for name, values in acc[key].items():
                acc[(how, "all")][name].extend(values)
    peaks = torch.stack(acc[("rotated", "all")]["peaks_at_target"]).mean(0)
    res = {
        "checkpoint": args.checkpoint, "scenes": len(scenes), "layer": text_cfg.num_hidden_layers - 1,
        "sections_pairs": {k: [v.start, v.stop] for k, v in secs.items()},
        "max_error_against_the_models_attention": round(max(check), 6),
        "binding_head": int(peaks.argmax()), "peaks_at_target_by_head": [round(float(v), 3) for v in peaks],
        "by_head": {},
    }  # fmt: skip
    for head in range(heads):
        res["by_head"][str(head)] = {
            how: {
                expr: {name: round(float(torch.stack(v)[:, head].mean()), 3) for name, v in figs.items()}
                | {"n": len(figs["total"])}
                for (how_, expr), figs in sorted(acc.items())
                if how_ == how
            }
            for how in ("rotated", "content only")
        }
    print(json.dumps({k: v for k, v in res.items() if k != "by_head"}))
    print(json.dumps({"binding head": res["by_head"][str(res["binding_head"])]}, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
