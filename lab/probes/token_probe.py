"""Do a checkpoint's image tokens say *which* token holds the named object? A probe on the frozen vision side.

A referring answer needs two things from the merged image tokens: which token (cell of the merged grid) holds
the object the expression names, and where in it the object is. Round five found that the base mostly fails
the first: it reads another object's box. This script asks whether that information is in the tokens at all,
apart from how well the LLM reads them. It freezes the checkpoint's vision tower + merger, computes the merged
tokens of fresh single-image scenes, and trains a small MLP on each token (with its cell) that predicts, for
each of the 356 attribute keys of ``lab.tinybase.vision``, whether an object with those attributes has its
centre in that cell (binary cross-entropy). On the pretraining run's held-out questions (``heldout_refer``,
seed + 1,000,003, first question of each) it then picks the token with the highest score for the expression's
key and reports how often that is the target's cell, by object count and by whether another object's centre
shares the target's cell, next to the floor of always picking the cell that most often holds the target.

    python -m lab.probes.token_probe assets/tiny_base --image-size 224
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lab.tinybase.data import heldout_refer
from lab.tinybase.perception import DataConfig, Stage, make_sample
from lab.tinybase.vision import KEYS, expression_key, targets

HELDOUT_SEED_OFFSET = 1_000_003


def tokens(model, processor, images: list[np.ndarray], batch: int = 64) -> torch.Tensor:
    """Merged image tokens [n, tokens per image, hidden] of the frozen vision tower + merger."""
    from PIL import Image

    out = []
    visual = model.model.visual
    with torch.no_grad():
        for i in range(0, len(images), batch):
            chunk = images[i : i + batch]
            enc = processor.image_processor(images=[Image.fromarray(im, mode="RGB") for im in chunk],
                                            return_tensors="pt")  # fmt: skip
            v = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"]).pooler_output
            out.append(v.view(len(chunk), -1, v.shape[-1]))
    return torch.cat(out)


def cell_of(box: tuple[int, ...], side: int, grid: int) -> int:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return min(grid - 1, int(cy * grid / side)) * grid + min(grid - 1, int(cx * grid / side))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--train-scenes", type=int, default=10000)
    p.add_argument("--heldout", type=int, default=500)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument(
        "--seed", type=int, default=0, help="the pretraining run's seed (held-out: seed + 1000003)"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)

    from mirg.models.loading import load_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    loaded = load_model(args.checkpoint, device="cpu", dtype="float32")
    model, processor = loaded.model.eval(), loaded.processor
    cfg = replace(DataConfig(), image_sizes=(args.image_size,), size_weights=(1.0,))
    stage = Stage(cfg.stages[-1].objects, (0.0, 1.0, 0.0))
    scenes = [make_sample(np.random.default_rng([args.seed, i, 23]), cfg, stage, "list")
              for i in range(args.train_scenes)]  # fmt: skip
    tok = tokens(model, processor, [s.image for s in scenes])
    n, n_tok, d = tok.shape
    grid = round(n_tok**0.5)
    presence = torch.from_numpy(np.stack([targets(s, (grid, grid))[0] for s in scenes]))  # [n, T, K]
    held = heldout_refer(args.seed + HELDOUT_SEED_OFFSET, args.heldout, cfg)
    htok = tokens(model, processor, [s.image for s in held])
    hkey = [expression_key(s.meta["expressions"][0]) for s in held]
    hcell = np.asarray([cell_of(s.boxes[s.targets[0]], args.image_size, grid) for s in held])
    counts = np.asarray([len(s.boxes) for s in held])
    families = np.asarray(["+".join(KEYS[k][0]) for k in hkey])
    shared = np.asarray(
        [
            sum(cell_of(b, args.image_size, grid) == c for b in s.boxes) > 1
            for s, c in zip(held, hcell, strict=True)
        ]
    )  # another object's centre in the target's cell
    print(f"{n} scenes, tokens {tuple(tok.shape)}, {time.time() - t0:.0f} s", flush=True)

    scale = tok.std().item()
    cell = torch.eye(n_tok)
    probe = torch.nn.Sequential(torch.nn.Linear(d + n_tok, args.hidden), torch.nn.GELU(),
                                torch.nn.Linear(args.hidden, len(KEYS)))  # fmt: skip

    def scores(t: torch.Tensor) -> torch.Tensor:
        return probe(torch.cat([t / scale, cell.expand(t.shape[0], -1, -1)], dim=-1))  # [B, T, K]

    def evaluate() -> dict[str, float]:
        with torch.no_grad():
            s = scores(htok)
        pick = s[torch.arange(len(held)), :, torch.tensor(hkey)].argmax(1).numpy()
        right = pick == hcell
        res = {"cell_acc": float(right.mean())}
        for k in range(1, 6):
            res[f"cell_acc_{k}obj"] = float(right[counts == k].mean())
        res["cell_acc_alone"], res["cell_acc_shared"] = (
            float(right[~shared].mean()),
            float(right[shared].mean()),
        )
        res["shared_fraction"] = float(shared.mean())
        for fam in sorted(set(families)):  # which attributes the expression names
            res[f"cell_acc_{fam}"] = float(right[families == fam].mean())
        return res

    opt = torch.optim.AdamW(probe.parameters(), lr=2e-3, weight_decay=0.01)
    batch, history = 128, []
    for epoch in range(args.epochs):
        perm = torch.randperm(n)
        for b in range(0, n, batch):
            idx = perm[b : b + batch]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(scores(tok[idx]), presence[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append({"epoch": epoch + 1, "train_bce": loss.item(), **evaluate()})
        print(json.dumps(history[-1]), flush=True)
    floor = float((hcell == np.bincount(hcell, minlength=n_tok).argmax()).mean())
    final = {"checkpoint": args.checkpoint, "image_size": args.image_size, "train_scenes": n, "heldout": len(held),
             "tokens_per_image": n_tok, "hidden": args.hidden, "epochs": args.epochs, "floor_most_common_cell": floor,
             "minutes": (time.time() - t0) / 60, "final": history[-1], "history": history}  # fmt: skip
    print(json.dumps({k: v for k, v in final.items() if k != "history"}))
    if args.json:
        Path(args.json).write_text(json.dumps(final, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
