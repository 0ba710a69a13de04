"""What the teacher-forced probes share (``attn_probe.py``, ``rope_probe.py``): their command line, the checkpoint
loaded with eager attention, the held-out referring scenes of ``python -m lab.tinybase`` (first question only, short
prompt), and batches with the position that predicts each answer's first box digit."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import replace
from typing import Any


def parser(doc: str, n: int) -> argparse.ArgumentParser:
    """The probes' arguments: checkpoint, --image-size, --n (default ``n``), --seed, --threads, --json."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--n", type=int, default=n, help="held-out scenes")
    p.add_argument(
        "--seed", type=int, default=0, help="the pretraining run's seed (held-out: seed + 1000003)"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the figures here")
    return p


def load(args: argparse.Namespace) -> tuple[Any, Any, list[Any]]:
    """(model in eval mode with eager attention, processor, held-out scenes with their first question only)."""
    import torch

    from lab.tinybase.data import heldout_refer
    from lab.tinybase.loop import HELDOUT_SEED_OFFSET
    from lab.tinybase.perception import DataConfig
    from mirg.models.loading import load_model

    torch.set_num_threads(args.threads)
    loaded = load_model(args.checkpoint, device="cpu", dtype="float32", attn_implementation="eager")
    loaded.model.eval()
    cfg = replace(DataConfig(), image_sizes=(args.image_size,), size_weights=(1.0,), mirg_prompt=0.0)
    scenes = heldout_refer(args.seed + HELDOUT_SEED_OFFSET, args.n, cfg)
    for s in scenes:  # the first question only, as the held-out metrics
        s.turns, s.targets = s.turns[:1], s.targets[:1]
    return loaded.model, loaded.processor, scenes


def batches(
    proc: Any, scenes: list[Any], size: int = 16, first_only: bool = True
) -> Iterator[tuple[list[Any], dict[str, Any], dict[str, Any]]]:
    """(scenes, model inputs without labels, ``lab.tinybase.bind.attn_targets`` cut to the one position per scene
    that predicts its box's first digit, or every box position when not ``first_only``) for teacher-forced passes
    over ``scenes``."""
    from lab.tinybase.batching import collate
    from lab.tinybase.bind import attn_targets, first_digits

    for i in range(0, len(scenes), size):
        chunk = scenes[i : i + size]
        batch = collate(proc, chunk)
        tg = attn_targets(proc, chunk, batch)
        batch.pop("labels")
        if first_only:
            tg = first_digits(tg)
            assert tg["rows"].tolist() == list(range(len(chunk)))  # one answer per scene
        yield chunk, batch, tg
