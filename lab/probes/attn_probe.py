"""Where does a perception checkpoint's LLM look when it writes a box, and does looking right make it right?

On the held-out referring scenes of ``python -m lab.tinybase`` (seed + 1,000,003, short prompt, first question), with the
reference answer fed in (teacher forcing), this takes each decoder layer's attention from the position that
predicts the box's first digit and reports, per layer and head, the share of the image attention on the target
token (the merged token whose cell holds the named object's centre; ``lab.tinybase.bind``) and how often that
token gets the most of it. It then generates the answers greedily and splits Acc@0.5 by whether the last layer
(its heads' image attention summed) looked at the target token most, and both by the attributes the expression
names (``color``, ``size+shape``, ...). When the checkpoint has a
``vision_head.safetensors`` of a readout kind, it also scores the head's own box for the expression's key: how
well the image tokens alone carry the box (round nine in lab/NOTES.md), overall, by objects and by expression.

    python -m lab.probes.attn_probe runs/Y1/final --json runs/probe/Y1_attn.json
"""

from __future__ import annotations

import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from lab.probes import _probe

    args = _probe.parser(__doc__, 500).parse_args(argv)

    import torch

    from lab.tinybase.bind import image_attention
    from lab.tinybase.evaluate import expression_family, generate, refer_metrics
    from mirg.boxes import iou

    model, proc, scenes = _probe.load(args)
    n_layers = model.config.text_config.num_hidden_layers
    n_heads = model.config.text_config.num_attention_heads
    share = torch.zeros(n_layers, n_heads)
    first = torch.zeros(n_layers, n_heads)
    looked: list[bool] = []
    for _, batch, first_tg in _probe.batches(proc, scenes):
        with torch.no_grad():
            out = model(**batch, output_attentions=True)
        for layer, w in enumerate(out.attentions):
            img = image_attention(w, first_tg)  # [B, H, G]
            target = first_tg["target"].view(-1, 1, 1).expand(-1, n_heads, 1)
            share[layer] += (img.gather(-1, target).squeeze(-1) / img.sum(-1)).sum(0)
            first[layer] += (img.argmax(-1) == target.squeeze(-1)).float().sum(0)
            if layer == n_layers - 1:
                looked += (img.sum(1).argmax(-1) == first_tg["target"]).tolist()
    n = len(scenes)
    answers = generate(model, proc, scenes)
    right = [refer_metrics([s], [a])["acc@0.5"] >= 1.0 for s, a in zip(scenes, answers, strict=True)]

    def acc(mask: list[bool]) -> float | None:
        k = sum(mask)
        return round(sum(r for r, m in zip(right, mask, strict=True) if m) / k, 3) if k else None

    named = [expression_family(s.meta["expressions"][0]) for s in scenes]

    def by_expression(values: list[bool]) -> dict[str, float]:
        return {e: round(sum(v for v, m in zip(values, named, strict=True) if m == e) / named.count(e), 3)
                for e in sorted(set(named))}  # fmt: skip

    res = {
        "checkpoint": args.checkpoint, "scenes": n, "acc@0.5": round(sum(right) / n, 3),
        "acc@0.5_by_expression": by_expression(right),
        "last_layer_looks_at_target_by_expression": by_expression(looked),
        "target_share_by_layer_head": [[round(float(v), 3) for v in row] for row in share / n],
        "target_first_by_layer_head": [[round(float(v), 3) for v in row] for row in first / n],
        "last_layer_looks_at_target": round(sum(looked) / n, 3),
        "acc_when_looking_at_target": acc(looked), "acc_when_not": acc([not x for x in looked]),
    }  # fmt: skip
    from lab.tinybase.loop import head_file

    head = head_file(args.checkpoint)  # the checkpoint's own, or the lab's copy of the shipped base's
    if head is not None:
        from safetensors.torch import load_file

        from lab.tinybase.vision import VisionStage, expression_key

        state = load_file(str(head))
        kind = "readout-pos" if "cell" in state else "cells"
        if kind != "cells":
            stage = VisionStage(model, proc, kind)
            stage.head.load_state_dict(state)
            hits, by_objects = [], {}
            with torch.no_grad():
                for i in range(0, n, 50):
                    chunk = scenes[i : i + 50]
                    tokens, _ = stage._tokens(chunk)
                    keys = torch.tensor([[expression_key(s.meta["expressions"][0])] for s in chunk])
                    pred = stage.head(tokens.float().view(len(chunk), -1, tokens.shape[-1]), keys)[:, 0]
                    for s, b in zip(chunk, pred.tolist(), strict=True):
                        side = s.size[0]
                        ok = iou([v * side for v in b], s.boxes[s.targets[0]]) >= 0.5
                        hits.append(ok)
                        by_objects.setdefault(str(len(s.boxes)), []).append(ok)
            res["vision_head"] = kind
            res["vision_head_acc@0.5"] = round(sum(hits) / n, 3)
            res["vision_head_acc@0.5_by_objects"] = {
                k: round(sum(v) / len(v), 3) for k, v in sorted(by_objects.items())
            }
            res["vision_head_acc@0.5_by_expression"] = by_expression(hits)
    print(json.dumps(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
