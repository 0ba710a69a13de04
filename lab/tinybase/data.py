"""The pretraining's batches and held-out sets, drawn from the perception samples
(:mod:`lab.tinybase.perception`). Every batch is a pure function of ``(seed, step)`` and the curriculum stage of
``step / steps``, so a resumed run sees exactly the data an uninterrupted one would."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lab.tinybase.perception import (
    PERCEPTION_TASKS,
    UNIFORM_EXPR,
    DataConfig,
    PerceptionSample,
    Stage,
    make_multi_sample,
    make_sample,
    perception_rng,
)

HELDOUT_TURNS = (1, 3)  # refer_turns of held-out samples (see heldout_refer)


def batch_samples(
    seed: int, step: int, batch_size: int, cfg: DataConfig, progress: float
) -> list[PerceptionSample]:
    """The training batch of ``step``: a pure function of (seed, step, batch_size, progress stage).

    One task and one prompt style per batch (drawn from the stage's mixture), so sequences pad little; with
    ``cfg.multi_image`` that fraction of the referring batches hold several images per sample."""
    stage = cfg.stage_at(progress)
    rng = np.random.default_rng([seed, step, 7])
    task = PERCEPTION_TASKS[int(rng.choice(len(PERCEPTION_TASKS), p=np.asarray(stage.mix) / sum(stage.mix)))]
    bcfg = replace(cfg, mirg_prompt=float(rng.random() < cfg.mirg_prompt))
    if task == "refer" and cfg.multi_image and rng.random() < cfg.multi_image:
        return [
            make_multi_sample(perception_rng(seed, step * batch_size + i), bcfg, stage)
            for i in range(batch_size)
        ]
    return [
        make_sample(perception_rng(seed, step * batch_size + i), bcfg, stage, task) for i in range(batch_size)
    ]


def heldout_refer(
    seed: int, n: int, cfg: DataConfig, objects: tuple[int, int] | None = None
) -> list[PerceptionSample]:
    """``n`` held-out referring samples from the last stage's object range (or ``objects``); use a seed the
    training run does not use (the loop adds 1,000,003 to the training seed). Only the first question counts;
    the turn count is pinned to the default's, whose random draws fix the scenes and questions, so runs with
    any ``refer_turns`` (``expr_weights``, ``min_objects``) are measured on the same held-out samples."""
    last = cfg.stages[-1]
    stage = Stage(objects or last.objects, (1.0, 0.0, 0.0))
    cfg = replace(cfg, refer_turns=HELDOUT_TURNS, expr_weights=UNIFORM_EXPR)
    return [make_sample(perception_rng(seed, i), cfg, stage, task="refer") for i in range(n)]


def heldout_multi(
    seed: int, n: int, cfg: DataConfig, images: tuple[int, int] = (2, 3)
) -> list[PerceptionSample]:
    """``n`` held-out multi-image referring samples (:func:`~lab.tinybase.perception.make_multi_sample`) from the
    last stage's object range, ``images`` per sample; a seed stream of their own (``seed`` as for
    :func:`heldout_refer`, index offset by 10,000,000), so they are the same whatever the training mixture."""
    stage = Stage(cfg.stages[-1].objects, (1.0, 0.0, 0.0))
    cfg = replace(cfg, multi_images=images, expr_weights=UNIFORM_EXPR)
    return [make_multi_sample(perception_rng(seed, 10_000_000 + i), cfg, stage) for i in range(n)]
