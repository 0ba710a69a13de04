"""The pretraining run's settings: one dataclass, parsed like ``mirg sft``'s (defaults < YAML ``--config`` <
command line, unknown keys refused; :func:`mirg.training.config.parse_stage_config`). Every field is an option
under its own name and a dashed alias (``--max_objects`` / ``--max-objects``); values with a syntax of their own
(``--refer-turns 1:3``, ``--expr-weights color=4,size+color=2``, ``--attn-aux-heads 3``, ``--grow-text 256x3``)
are strings, read by the properties below and checked by :meth:`PretrainConfig.validate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from lab.tinybase.perception import EXPR_NAMES, UNIFORM_EXPR, DataConfig
from mirg.errors import MirgError

HEAD_KINDS = ("cells", "readout-pos")


def parse_turns(text: str) -> tuple[int, int]:
    """``LO:HI`` or ``N`` (= ``N:N``) for ``--refer-turns``."""
    lo, _, hi = str(text).partition(":")
    try:
        turns = (int(lo), int(hi or lo))
    except ValueError:
        raise MirgError(f"--refer-turns: expected LO:HI or N, got {text!r}") from None
    if not 1 <= turns[0] <= turns[1]:
        raise MirgError(f"--refer-turns needs 1 <= LO <= HI, got {text!r}")
    return turns


def parse_expr_weights(text: str) -> tuple[float, ...]:
    """``NAME=W[,NAME=W...]`` for ``--expr-weights``: a weight per :data:`~lab.tinybase.perception.EXPR_NAMES`
    entry (unnamed: 1; empty: uniform)."""
    weights = dict(zip(EXPR_NAMES, UNIFORM_EXPR, strict=True))
    for part in filter(None, str(text).split(",")):
        name, _, w = part.partition("=")
        if name.strip() not in weights:
            raise MirgError(
                f"--expr-weights: unknown attribute subset {name!r}; one of {', '.join(EXPR_NAMES)}"
            )
        try:
            weights[name.strip()] = float(w)
        except ValueError:
            raise MirgError(f"--expr-weights: expected NAME=WEIGHT, got {part!r}") from None
        if not weights[name.strip()] > 0:
            raise MirgError(f"--expr-weights: weights must be positive, got {part!r}")
    return tuple(weights.values())


def parse_heads(text: str) -> tuple[int, ...]:
    """``H[,H...]`` for ``--attn-aux-heads`` (empty: all heads)."""
    try:
        heads = tuple(int(h) for h in filter(None, str(text).split(",")))
    except ValueError:
        raise MirgError(f"--attn-aux-heads: expected head indices like 3 or 2,3, got {text!r}") from None
    if any(h < 0 for h in heads) or len(set(heads)) != len(heads):
        raise MirgError(f"--attn-aux-heads needs distinct head indices from 0, got {text!r}")
    return heads


def parse_grow(text: str) -> tuple[int, int]:
    """``"256x4"`` -> (hidden size 256, 4 layers) for ``--grow-text``."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m:
        raise MirgError(f"--grow-text: expected WIDTHxLAYERS (e.g. 256x4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _opt(default: object, help: str) -> object:
    return field(default=default, metadata={"help": help})


@dataclass
class PretrainConfig:
    out: str | None = _opt(None, "run folder (model/, state.pt, log.jsonl, final/); required")
    size: str = _opt(
        "base-m8", "architecture preset: tiny, small, base, base-m8, base-m4 (lab.tinybase.model)"
    )
    steps: int | None = _opt(None, "train for N optimizer steps; required")
    batch_size: int = _opt(16, "samples per LLM-stage step")
    lr: float = _opt(6e-4, "peak learning rate (AdamW; warmup then cosine)")
    min_lr_ratio: float = _opt(0.05, "the cosine ends at lr x this")
    warmup: int = _opt(100, "warmup steps")
    weight_decay: float = _opt(0.01, "AdamW weight decay")
    grad_clip: float = _opt(1.0, "gradient norm clip")
    vision_steps: int = _opt(1500, "first train the vision tower alone for N steps (a temporary box head)")
    vision_lr: float = _opt(1e-3, "learning rate of the vision stage")
    vision_batch_size: int = _opt(32, "images per vision-stage step")
    vision_head: Literal["cells", "readout-pos"] = _opt(
        "cells",
        "the vision stage's temporary head: cells (per token: which attribute keys have an object in its cell, and "
        "their boxes) or readout-pos (per attribute key: one attention layer reads the named object's box off the "
        "image's tokens, each token's cell given)",
    )
    vision_aux: float = _opt(
        0.0,
        "keep the vision head's loss on in the LLM stage with this weight (the head carries over; 0: off)",
    )
    attn_aux: float = _opt(
        0.0,
        "supervise the LLM's last-layer attention with this weight: at a box digit of a referring answer its "
        "image attention should fall on the named object's token (0: off; eager attention then)",
    )
    attn_aux_heads: str = _opt("", "H[,H...]: supervise only these heads of the last layer (default: all)")
    attn_aux_at: Literal["box", "first"] = _opt(
        "box", "where --attn-aux supervises: every digit of the box, or only the first (where it commits)"
    )
    init: str | None = _opt(
        None, "start from this checkpoint (e.g. an earlier run's final/) instead of --size"
    )
    grow_text: str | None = _opt(
        None,
        "WxL: widen/deepen the --init checkpoint's text model to hidden W, L layers (function-preserving)",
    )
    new_vision: str | None = _opt(
        None,
        "replace the --init checkpoint's vision tower + merger by a fresh one of this preset (e.g. base-m4)",
    )
    image_size: int | None = _opt(None, "px per side of training and held-out images (default 112)")
    max_objects: int | None = _opt(None, "at most N objects per image (default: 5, the curriculum's)")
    min_objects: int = _opt(1, "at least N objects per image in the LLM stage's training data")
    refer_turns: str = _opt("1:3", "LO:HI questions about distinct objects per referring sample (N: N:N)")
    multi_image: float = _opt(
        0.0, "fraction of referring batches with 2-3 images per sample (0: single images)"
    )
    expr_weights: str = _opt(
        "",
        "NAME=W,...: how a referring question picks among the attribute subsets that identify its object (shape, "
        "color, color+shape, size+shape, size+color, size+color+shape; unnamed weigh 1; default uniform)",
    )
    seed: int = _opt(0, "model init and data seed (held-out data: seed + 1000003)")
    eval_every: int = _opt(500, "held-out metrics every N steps (0: never)")
    eval_samples: int = _opt(64, "held-out samples for periodic metrics")
    final_eval_samples: int = _opt(500, "held-out samples for the final metrics")
    migsynth_per_task: int = _opt(10, "MIG-Synth samples per task for the final multi-image scores (0: skip)")
    save_minutes: float = _opt(3.0, "save a resumable checkpoint every M minutes")
    log_every: int = _opt(25, "progress line every N steps")
    threads: int = _opt(0, "torch CPU threads (0: torch's default)")
    device: str | None = _opt(None, "cpu or cuda (default: cuda when available)")
    workers: int | None = _opt(
        None, "processes that build batches ahead (default: 0 on CPU, up to 8 on CUDA); the data is the same"
    )
    data: DataConfig = field(init=False, default_factory=DataConfig)  # set by the Trainer from the options

    @property
    def turns(self) -> tuple[int, int]:
        return parse_turns(self.refer_turns)

    @property
    def weights(self) -> tuple[float, ...]:
        return parse_expr_weights(self.expr_weights)

    @property
    def heads(self) -> tuple[int, ...]:
        return parse_heads(self.attn_aux_heads)

    def data_config(self) -> DataConfig:
        """The generator's settings these options give (the curriculum capped at ``max_objects``)."""
        from dataclasses import replace

        data = replace(DataConfig().capped(self.max_objects), refer_turns=self.turns, multi_image=self.multi_image,
                       expr_weights=self.weights, min_objects=self.min_objects)  # fmt: skip
        if self.image_size is not None:
            data = replace(data, image_sizes=(self.image_size,), size_weights=(1.0,))
        return data

    def validate(self) -> PretrainConfig:
        from lab.tinybase.model import SIZE_CHOICES

        if not self.out:
            raise MirgError("give --out DIR")
        if self.steps is None or self.steps < 1:
            raise MirgError("give --steps N (at least 1)")
        if self.size not in SIZE_CHOICES:
            raise MirgError(f"--size must be one of {', '.join(SIZE_CHOICES)}, got {self.size!r}")
        if self.max_objects is not None and not 1 <= self.max_objects <= 5:
            raise MirgError("--max-objects must be between 1 and 5")
        if self.image_size is not None and self.image_size < 28:
            raise MirgError(f"--image-size must be at least 28, got {self.image_size}")
        parse_turns(self.refer_turns)  # each raises on a bad value
        parse_expr_weights(self.expr_weights)
        if (self.grow_text is not None or self.new_vision) and not self.init:
            raise MirgError("--grow-text/--new-vision change the --init checkpoint; give --init DIR as well")
        if self.grow_text is not None:
            parse_grow(self.grow_text)
        if self.vision_steps < 0:
            raise MirgError("--vision-steps must be 0 or more")
        if not self.vision_aux >= 0:
            raise MirgError(f"--vision-aux must be 0 or more, got {self.vision_aux}")
        if not self.attn_aux >= 0:
            raise MirgError(f"--attn-aux must be 0 or more, got {self.attn_aux}")
        if self.vision_head not in HEAD_KINDS:
            raise MirgError(f"--vision-head must be one of {', '.join(HEAD_KINDS)}, got {self.vision_head!r}")
        if not 0 <= self.multi_image <= 1:
            raise MirgError(f"--multi-image must be a fraction in [0, 1], got {self.multi_image}")
        if not 1 <= self.min_objects <= (self.max_objects or 5):
            raise MirgError(
                f"--min-objects must be between 1 and --max-objects ({self.max_objects or 5}), got {self.min_objects}"
            )
        if self.heads and not self.attn_aux:
            raise MirgError("--attn-aux-heads chooses the heads --attn-aux supervises; give --attn-aux W too")
        if self.attn_aux_at not in ("box", "first"):
            raise MirgError(f"--attn-aux-at must be box or first, got {self.attn_aux_at!r}")
        if self.attn_aux_at != "box" and not self.attn_aux:
            raise MirgError("--attn-aux-at chooses where --attn-aux supervises; give --attn-aux W too")
        if self.batch_size < 1:
            raise MirgError("--batch-size must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise MirgError("--workers must be 0 or more")
        return self


def parse(config: str | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """The run's settings from an optional YAML file and ``--key value`` overrides, validated."""
    from mirg.training.config import parse_stage_config

    (cfg,), _ = parse_stage_config([PretrainConfig], config, overrides, cpu=False)
    return cfg.validate()
