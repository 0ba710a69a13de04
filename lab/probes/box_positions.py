"""Where does each head of a perception checkpoint's last layer look while the answer writes the box?

On the held-out referring scenes of ``python -m lab.tinybase`` (seed + 1,000,003, short prompt, first question), with the
reference answer fed in, this takes the last decoder layer's attention at every position of the box (the one that
predicts its first digit is position 0, then the next digits and separators up to the closing bracket) and
reports, per position and head, how often the head's image attention peaks at the named object's token, and the
mean ``-log`` of the target's share of it (the loss ``--attn-aux`` trains, ``lab.tinybase.bind``). Round
seventeen in lab/NOTES.md: it showed that the shipped base's binding head looks at the named object where
the box starts and elsewhere later, which is why ``--attn-aux-at first`` exists.

    python -m lab.probes.box_positions assets/tiny_base --n 160
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from lab.probes import _probe

    args = _probe.parser(__doc__, 160).parse_args(argv)

    import torch

    from lab.tinybase.bind import image_attention, target_share

    model, proc, scenes = _probe.load(args)
    peaks: dict[int, list] = defaultdict(list)  # box position -> per-position [heads] tensors
    losses: dict[int, list] = defaultdict(list)
    for _chunk, batch, tg in _probe.batches(proc, scenes, first_only=False):
        with torch.no_grad():
            weights = model(**batch, output_attentions=True).attentions[-1]  # [B, H, T, T]
        img = image_attention(weights, tg)  # [P, H, G]
        share = target_share(weights, tg)  # [P, H]
        hit = (img.argmax(-1) == tg["target"].unsqueeze(1)).float()
        rows = tg["rows"].tolist()
        for p, r in enumerate(rows):
            k = p - rows.index(r)  # rows are in order, each answer's positions consecutive
            peaks[k].append(hit[p])
            losses[k].append(-torch.log(share[p].clamp(min=1e-8)))
    table = [
        {
            "position": k,
            "n": len(peaks[k]),
            "peaks_at_target_by_head": [round(v, 3) for v in torch.stack(peaks[k]).mean(0).tolist()],
            "loss_by_head": [round(v, 3) for v in torch.stack(losses[k]).mean(0).tolist()],
        }
        for k in sorted(peaks)
    ]
    res = {"checkpoint": args.checkpoint, "scenes": len(scenes), "positions": table}
    print(json.dumps(res, indent=1))
    heads = len(table[0]["peaks_at_target_by_head"]) if table else 0
    print("position  n     " + " ".join(f"head{h:<2}" for h in range(heads)) + "   (peaks at the target, %)")
    for row in table:
        cells = " ".join(f"{100 * v:6.0f}" for v in row["peaks_at_target_by_head"])
        print(f"{row['position']:>8}  {row['n']:<5} {cells}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
