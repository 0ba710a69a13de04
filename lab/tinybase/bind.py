"""``--attn-aux``: supervise *which image token* the LLM reads when it writes a box.

Why (lab/NOTES.md, round nine): after eight rounds the shipped base's LLM picks the named object about
half the time on 1–5-object scenes, although a probe on its image tokens finds the object's cell far more often
(85 % with the tokens kept by ``--vision-aux``). The LM loss reaches the choice only through the box digits,
after the attention has chosen; the attention's queries and keys get a weak, indirect gradient. This module
gives them a direct one: at every position of a referring answer that predicts a box digit, the last layer's
heads should put their image attention on the merged token whose cell holds the named object's centre.

The loss is the cross-entropy of that token under each head's attention *renormalised over the image's tokens*
(``-log(a_target / sum a_image)``), averaged over heads and positions. Renormalising leaves each head free to
decide how much it looks at the image at all (the LM loss decides that); it only says where in the image. The
attention weights come from a forward hook on the last decoder layer's attention module, so the text model runs
with ``eager`` attention (the only implementation that returns them). The checkpoint stays plain Qwen2.5-VL.

``--attn-aux-heads`` supervises only some heads, and ``--attn-aux-at first`` only the position that predicts the
box's first digit: round sixteen found that one head of the shipped base's last layer does the binding there (it
looks elsewhere for the later coordinates, where other heads take over), and round nine that supervising all heads
at every digit hurt. A multi-image sample's image tokens
are all its images' (in order), and its target is the named object's token in the image the answer names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ANSWER_OPEN = '"bbox_2d": ['  # the box follows this in every dialect-rendered referring answer


def _cell(box: Sequence[int], size: tuple[int, int], grid: tuple[int, int]) -> int:
    """Raster index of the merged-grid cell that holds ``box``'s centre (as :func:`lab.tinybase.vision.targets`)."""
    rows, cols = grid
    w, h = size
    r = min(rows - 1, int((box[1] + box[3]) / 2 * rows / h))
    c = min(cols - 1, int((box[0] + box[2]) / 2 * cols / w))
    return r * cols + c


def attn_targets(processor: Any, samples: Sequence[Any], batch: dict[str, Any]) -> dict[str, Any]:
    """For a collated batch (:func:`lab.tinybase.batching.collate`): every position that predicts a box digit of
    a referring answer, with the positions of its prompt's image tokens (every image's, in order) and which of
    them holds the named object (in the image the answer names, for a multi-image sample). ``rows``/``pos`` [P],
    ``image_pos`` [P, G] (-1: padding), ``target`` [P] (an index into ``image_pos``), ``first`` [P] (the position
    predicts the box's first digit). Empty (P = 0) for batches without referring answers (list, count)."""
    import torch

    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids(processor.image_token)
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    m = processor.image_processor.merge_size
    grids = [(int(h) // m, int(w) // m) for _, h, w in batch["image_grid_thw"].tolist()]
    labels = batch["labels"]
    rows: list[int] = []
    pos: list[int] = []
    image_pos: list[list[int]] = []
    target: list[int] = []
    first: list[bool] = []
    row = 0  # this sample's first row of image_grid_thw (one row per image, in batch order)
    for r, s in enumerate(samples):
        scenes = s.scenes() if hasattr(s, "scenes") else [s]
        mine, row = grids[row : row + len(scenes)], row + len(scenes)
        if getattr(s, "task", None) != "refer":
            continue
        ids = batch["input_ids"][r].tolist()
        img = [j for j, t in enumerate(ids) if t == image_id]
        if len(img) != sum(h * w for h, w in mine):
            raise ValueError(f"sample {r}: {len(img)} image tokens for image grids {mine}")
        place = getattr(s, "place", 1)
        offset = sum(h * w for h, w in mine[: place - 1])  # the named image's first token in ``img``
        # each supervised answer (a run of labels != -100 ending in <|im_end|>), in turn order
        answers: list[tuple[int, int]] = []
        j, n = 0, len(ids)
        lab = labels[r].tolist()
        while j < n:
            if lab[j] == -100:
                j += 1
                continue
            k = j
            while k < n and lab[k] != -100 and ids[k] != end_id:
                k += 1
            answers.append((j, k))
            j = k + 1
        for (a, b), t in zip(answers, s.targets, strict=False):
            text = tok.decode(ids[a:b])
            if ANSWER_OPEN not in text:
                continue
            # the box's tokens: between the token that ends ANSWER_OPEN and the closing ']'
            start = next(q for q in range(a, b) if ANSWER_OPEN in tok.decode(ids[a : q + 1]))
            stop = next(q for q in range(start + 1, b) if "]" in tok.decode([ids[q]]))
            cell = offset + _cell(s.boxes[t], s.size, mine[place - 1])
            for q in range(start, stop):  # position q predicts token q + 1: the box's digits and separators
                rows.append(r)
                pos.append(q)
                image_pos.append(img)
                target.append(cell)
                first.append(q == start)
    g = max([len(x) for x in image_pos], default=1)
    ip = torch.full((len(image_pos), g), -1, dtype=torch.long)
    for i, x in enumerate(image_pos):
        ip[i, : len(x)] = torch.tensor(x)
    return {"rows": torch.tensor(rows, dtype=torch.long), "pos": torch.tensor(pos, dtype=torch.long),
            "image_pos": ip, "target": torch.tensor(target, dtype=torch.long),
            "first": torch.tensor(first, dtype=torch.bool)}  # fmt: skip


def first_digits(tg: dict[str, Any]) -> dict[str, Any]:
    """``tg`` (:func:`attn_targets`) cut to the positions that predict a box's first digit: one per answer, where
    the answer commits to an object (``--attn-aux-at first``)."""
    return {k: v[tg["first"]] for k, v in tg.items()}


def image_attention(weights: Any, tg: dict[str, Any], heads: Sequence[int] = ()) -> Any:
    """The attention of each supervised position on its image's tokens: [P, heads, G] (padding 0), from the layer's
    attention probabilities ``weights`` [B, heads, T, T] and ``tg`` (:func:`attn_targets`); only the heads
    ``heads`` (in that order) when given, else all."""
    sel = weights[tg["rows"], :, tg["pos"], :]  # [P, H, T]
    if heads:
        sel = sel[:, list(heads)]
    img = sel.gather(-1, tg["image_pos"].clamp(min=0).unsqueeze(1).expand(-1, sel.shape[1], -1))
    return img * (tg["image_pos"] >= 0).unsqueeze(1)


def attn_loss(weights: Any, tg: dict[str, Any], heads: Sequence[int] = ()) -> Any:
    """Mean over heads (``heads``, default all) and supervised positions of ``-log`` the target token's share of
    the image attention. ``weights``: the layer's attention probabilities [B, heads, T, T]; ``tg``:
    :func:`attn_targets`."""
    import torch

    if tg["rows"].numel() == 0:
        return weights.sum() * 0.0
    return -torch.log(target_share(weights, tg, heads).clamp(min=1e-8)).mean()


def target_share(weights: Any, tg: dict[str, Any], heads: Sequence[int] = ()) -> Any:
    """The target token's share of each supervised position's image attention: [P, heads] (``heads``, default
    all); what :func:`attn_loss` takes ``-log`` of."""
    img = image_attention(weights, tg, heads)
    target = img.gather(-1, tg["target"].view(-1, 1, 1).expand(-1, img.shape[1], 1)).squeeze(-1)
    return target / img.sum(-1).clamp(min=1e-12)


def attn_hit(weights: Any, tg: dict[str, Any], heads: Sequence[int] = ()) -> float:
    """Fraction of (position, head) pairs (``heads``, default all) whose most-attended image token is the
    target's (for the logs)."""
    if tg["rows"].numel() == 0:
        return float("nan")
    img = image_attention(weights.detach(), tg, heads)
    return float((img.argmax(-1) == tg["target"].unsqueeze(1)).float().mean())
