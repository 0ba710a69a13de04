"""Can a randomly initialised tiny Qwen2.5-VL learn *where* an object is? The diagnostic behind lab/NOTES.md.

Trains on single-image, single-object scenes from the pretraining generator (``lab.tinybase.perception``) and
reports held-out numbers every ``--eval-every`` steps:

* ``--task refer``: the normal referring answer; reports the loss (nats) of the *first digit* of x1, y1, x2, y2.
  Always predicting the training marginal gives about 2.19 for x1/y1; x2/y2 fall below that as soon as the
  model copies x1/y1 and adds the object's size (which is content, not position).
* ``--task leftright``: the answer is ``<answer>left</answer>`` or ``<answer>right</answer>`` (object centre
  left or right of the middle); reports held-out accuracy (chance 0.5). ``--task topbottom``: the same with
  ``top`` / ``bottom`` (image tokens reach the LLM in raster order, so rows and columns may differ).
* ``--task xcol``: the 14 px patch column (1-8) of the object's centre, one digit (chance 0.125); ``--task x1``:
  just the number x1. Both report the accuracy of the first answer digit.
* ``--vision-warmup N``: first train the vision tower + merger alone for N steps (a linear head regressing the
  box; reports the held-out box error in pixels), then the full model: the single-object version of
  ``python -m lab.tinybase --vision-steps`` (lab/NOTES.md, round three).
* ``--vision-only``: the vision tower alone with a linear head on its mean-pooled output, left/right.
* ``--abspos``: a diagnostic the architecture does not have: a learned absolute position embedding added to
  the vision patch embeddings (a forward hook; every image here is 112 px, so the patch order is fixed).

Examples (one CPU thread each; about 0.2-0.3 s per step)::

    python -m lab.probes.position_probe --size base --task leftright --steps 600
    python -m lab.probes.position_probe --size base --text '{"rope_theta": 10, "mrope_section": [0, 8, 8]}'
    python -m lab.probes.position_probe --size base-m8 --vision-only --steps 500 --lr 1e-3
    python -m lab.probes.position_probe --size base-m8 --task refer --lr 6e-4 --steps 1200 --vision-warmup 800
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path


def build(size: str, text: dict, vision: dict, out: Path):
    """A fresh model of preset ``size`` with config overrides (text: any text_config key, plus ``rope_theta``
    and ``mrope_section``; vision: any vision_config key), and its processor."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from lab.tinybase.model import build_model_dir
    from mirg.models.loading import load_processor

    build_model_dir(out, size, 0)
    cfg = Qwen2_5_VLConfig.from_pretrained(str(out))
    text = dict(text)
    rope = cfg.text_config.rope_parameters
    if "rope_theta" in text:
        rope["rope_theta"] = float(text.pop("rope_theta"))
    if "mrope_section" in text:
        rope["mrope_section"] = list(text.pop("mrope_section"))
    for k, v in text.items():
        setattr(cfg.text_config, k, v)
    for k, v in vision.items():
        setattr(cfg.vision_config, k, v)
    cfg.vision_config.out_hidden_size = cfg.text_config.hidden_size
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    processor = load_processor(out)
    processor.image_processor.merge_size = cfg.vision_config.spatial_merge_size
    return model, processor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="base", help="lab.tinybase preset (tiny, small, base, base-m8, ...)")
    ap.add_argument(
        "--text", default="{}", help="JSON text_config overrides (rope_theta, mrope_section, ...)"
    )
    ap.add_argument("--vision", default="{}", help="JSON vision_config overrides (depth, hidden_size, ...)")
    ap.add_argument(
        "--task",
        choices=("refer", "leftright", "topbottom", "colorside", "color", "xcol", "x1"),
        default="refer",
    )
    ap.add_argument("--vision-only", action="store_true", help="vision tower + linear head, left/right")
    ap.add_argument(
        "--abspos", action="store_true", help="add a learned absolute position embedding to the patches"
    )
    ap.add_argument(
        "--vision-warmup",
        type=int,
        default=0,
        help="first train the vision tower + merger alone for N steps, a linear head regressing the box",
    )
    ap.add_argument("--vision-lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from lab.tinybase.batching import collate
    from lab.tinybase.perception import DataConfig, Stage, make_sample, perception_rng

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = build(args.size, json.loads(args.text), json.loads(args.vision), Path(tmp) / "m")
    tok = processor.tokenizer
    data, stage = DataConfig(mirg_prompt=0.0, refer_turns=(1, 1)), Stage((1, 1), (1.0, 0.0, 0.0))

    axis = 1 if args.task == "topbottom" else 0
    words = ("top", "bottom") if args.task == "topbottom" else ("left", "right")

    def right(s) -> bool:
        """The object's centre is right of (or below, for topbottom) the middle."""
        b = s.boxes[s.targets[0]]
        return (b[axis] + b[axis + 2]) / 2 >= s.size[axis] / 2

    def sample(seed: int, i: int):
        if args.task == "colorside":
            return color_side(seed, i)
        if args.task == "color":  # content only: "What colour is the object?" about the one object
            from lab.tinybase.perception import short_content

            s = make_sample(perception_rng(seed, i), data, stage, "refer")
            s.turns = [
                (short_content("What colour is the object?"), f"<answer>{s.labels[0].split()[1]}</answer>")
            ]
            return s
        s = make_sample(perception_rng(seed, i), data, stage, "refer")
        b = s.boxes[s.targets[0]]
        if args.task == "xcol":  # the 14 px patch column (1-8) of the object's centre: one digit
            s.turns = [(s.turns[0][0], f"<answer>{int((b[0] + b[2]) / 2 // 14) + 1}</answer>")]
        elif args.task == "x1":  # just the left edge, as the number the box answer starts with
            s.turns = [(s.turns[0][0], f"<answer>{b[0]}</answer>")]
        elif args.task != "refer":
            s.turns = [(s.turns[0][0], f"<answer>{words[int(right(s))]}</answer>")]
        return s

    def color_side(seed: int, i: int):
        """Two objects of different colours, one in each half; "What colour is the object on the left?"."""
        from lab.tinybase.perception import short_content

        k = 0
        while True:
            s = make_sample(
                perception_rng(seed, 10_000 * i + k), data, Stage((2, 2), (1.0, 0.0, 0.0)), "refer", 1
            )
            k += 1
            cx = [(b[0] + b[2]) / 2 for b in s.boxes]
            colours = [label.split()[1] for label in s.labels]
            if (cx[0] < 56) != (cx[1] < 56) and colours[0] != colours[1]:
                break
        side = ("left", "right")[i % 2]
        j = int((cx[0] < 56) != (side == "left"))
        s.turns = [
            (short_content(f"What colour is the object on the {side}?"), f"<answer>{colours[j]}</answer>")
        ]
        return s

    held = [sample(999, i) for i in range(128)]
    hb = collate(processor, held)
    pieces = [[tok.decode([t]) for t in row] for row in hb["input_ids"].tolist()]
    d = model.config.text_config.hidden_size
    if args.vision_only:
        head = torch.nn.Linear(d, 2)
        params = [*model.model.visual.parameters(), *head.parameters()]
    else:
        params = list(model.parameters())
    if args.abspos:
        patches = 64  # (112 / 14) ** 2 per image
        pos = torch.nn.Parameter(0.5 * torch.randn(patches, model.model.visual.patch_embed.embed_dim))
        model.model.visual.patch_embed.register_forward_hook(
            lambda mod, inp, out: out + pos.repeat(out.shape[0] // patches, 1)
        )
        params.append(pos)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)

    def vision_logits(samples):
        enc = processor.image_processor(
            images=[Image.fromarray(s.image) for s in samples], return_tensors="pt"
        )
        v = model.model.visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"]).pooler_output
        return head(v.reshape(len(samples), -1, d).mean(1))

    def first_digit_positions(r: int) -> list[int]:
        """Token indices of the first digit of each box number in held-out row ``r``."""
        toks, lab = pieces[r], hb["labels"][r].tolist()
        start = next(i for i in range(1, len(toks)) if lab[i] != -100 and "[" in toks[i - 1])
        out, i = [start], start
        while "]" not in toks[i] and len(out) < 4:
            if "," in toks[i]:
                j = i + 1
                while not toks[j].strip().isdigit():
                    j += 1
                out.append(j)
            i += 1
        return out

    def held_out() -> str:
        model.eval()
        with torch.no_grad():
            if args.vision_only:
                y = torch.tensor([int(right(s)) for s in held])
                acc = (vision_logits(held).argmax(1) == y).float().mean().item()
            else:
                logp = torch.log_softmax(model(**hb).logits.float(), -1)
        model.train()
        if args.vision_only:
            return f"left/right acc {acc:.3f}"
        ids = hb["input_ids"]
        if args.task != "refer":
            ok = 0
            for r in range(len(held)):
                labelled = [j for j in range(len(pieces[r])) if hb["labels"][r, j] != -100]
                if args.task in ("xcol", "x1"):  # the first digit ("<answer", ">", digit: split tokens)
                    j = next(j for j in labelled if pieces[r][j].strip().isdigit())
                elif args.task in (
                    "colorside",
                    "color",
                ):  # the token after "<answer": the colour's first piece
                    j = labelled[1]
                else:
                    j = next(j for j in labelled if any(w in pieces[r][j] for w in words))
                ok += int(logp[r, j - 1].argmax().item() == ids[r, j].item())
            what = {
                "colorside": "colour on the named side",
                "color": "colour",
                "xcol": "centre column",
                "x1": "x1 first digit",
            }.get(args.task, "/".join(words))
            return f"{what}: first answer token acc {ok / len(held):.3f}"
        nats = [[], [], [], []]
        for r in range(len(held)):
            for q, j in enumerate(first_digit_positions(r)):
                nats[q].append(-logp[r, j - 1, ids[r, j]].item())
        return "first-digit nats x1 y1 x2 y2 " + " ".join(f"{np.mean(v):.3f}" for v in nats)

    model.train()
    t0 = time.perf_counter()
    if args.vision_warmup:
        box_head = torch.nn.Linear(d, 4)
        vparams = [*model.model.visual.parameters(), *box_head.parameters()]
        vopt = torch.optim.AdamW(vparams, lr=args.vision_lr, betas=(0.9, 0.95), weight_decay=0.01)

        def box_error(samples):
            enc = processor.image_processor(
                images=[Image.fromarray(s.image) for s in samples], return_tensors="pt"
            )
            v = model.model.visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"]).pooler_output
            pred = box_head(v.reshape(len(samples), -1, d).mean(1))
            y = torch.tensor([s.boxes[s.targets[0]] for s in samples], dtype=torch.float32) / 112
            return pred, y

        for step in range(args.vision_warmup):
            pred, y = box_error([sample(1, step * args.batch_size + i) for i in range(args.batch_size)])
            loss = torch.nn.functional.smooth_l1_loss(pred, y, beta=0.05)
            vopt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vparams, 1.0)
            vopt.step()
            if (step + 1) % args.eval_every == 0:
                with torch.no_grad():
                    pred, y = box_error(held)
                err = (pred - y).abs().mean().item() * 112
                print(f"vision step {step + 1} {time.perf_counter() - t0:.0f}s held-out box error {err:.1f} px",
                      flush=True)  # fmt: skip
    for step in range(args.steps):
        warm = min(1.0, (step + 1) / 100)
        lr = args.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        samples = [sample(0, step * args.batch_size + i) for i in range(args.batch_size)]
        if args.vision_only:
            y = torch.tensor([int(right(s)) for s in samples])
            loss = torch.nn.functional.cross_entropy(vision_logits(samples), y)
        else:
            loss = model(**collate(processor, samples)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % args.eval_every == 0:
            print(f"step {step + 1} {time.perf_counter() - t0:.0f}s loss {loss.item():.4f} held-out {held_out()}",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
