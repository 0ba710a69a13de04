"""--expr-weights / --min-objects of the tiny base's pretraining: what the referring questions name and how crowded training is."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest

from lab.tinybase.data import batch_samples, heldout_multi, heldout_refer
from lab.tinybase.perception import (
    EXPR_NAMES,
    UNIFORM_EXPR,
    DataConfig,
    Stage,
    make_multi_sample,
    make_sample,
    perception_rng,
)
from lab.tinybase.vision import named_attributes

REFER = Stage((1, 5), (1.0, 0.0, 0.0))


def _weights(**kw: float) -> tuple[float, ...]:
    return tuple(kw.get(n.replace("+", "_"), 1.0) for n in EXPR_NAMES)


def _named(samples) -> Counter[str]:
    return Counter("+".join(named_attributes(e)) for s in samples for e in s.meta["expressions"])


def test_expr_weights_shift_what_questions_name_and_keep_them_unambiguous():
    cfg = DataConfig()
    colour = replace(cfg, expr_weights=_weights(color=8.0))
    plain = [make_sample(perception_rng(3, i), cfg, REFER, "refer") for i in range(300)]
    heavy = [make_sample(perception_rng(3, i), colour, REFER, "refer") for i in range(300)]
    a, b = _named(plain), _named(heavy)
    share = [c["color"] / sum(c.values()) for c in (a, b)]
    assert share[0] < 0.2 and share[1] > 2 * share[0], (a, b)
    # every question still names its object and no other one
    for s in heavy:
        for e, t in zip(s.meta["expressions"], s.targets, strict=True):
            words = set(named_attributes(e).values())
            assert [j for j, lab in enumerate(s.labels) if words <= set(lab.split())] == [t], (e, s.labels)
    # multi-image questions follow the weights too
    multi = [make_multi_sample(perception_rng(3, i), colour, REFER) for i in range(200)]
    assert _named(multi)["color"] / 200 > share[0] * 1.5
    # any uniform weighting is the default draw (the data of every earlier run)
    same = [
        make_sample(perception_rng(3, i), replace(cfg, expr_weights=(2.0,) * 6), REFER, "refer")
        for i in range(50)
    ]
    assert [s.turns for s in same] == [s.turns for s in plain[:50]]


def test_min_objects_floors_training_scenes_not_held_out_ones():
    cfg = replace(DataConfig(), min_objects=3)
    assert cfg.stage_at(0.0).objects == (3, 3) and cfg.stage_at(0.9).objects == (3, 5)
    assert DataConfig().stage_at(0.0).objects == (1, 2)
    for step in range(12):
        for s in batch_samples(1, step, 4, replace(cfg, multi_image=0.3), step / 12):
            assert all(len(sc.boxes) >= 3 for sc in s.scenes()), (step, s.task)
    # held-out scenes and questions do not depend on the training mixture
    mixed = replace(cfg, expr_weights=_weights(color=5.0, size_color=2.0))
    for fn in (heldout_refer, heldout_multi):
        one, two = fn(5, 40, DataConfig()), fn(5, 40, mixed)
        assert [s.turns for s in one] == [s.turns for s in two]
    assert min(len(s.boxes) for s in heldout_refer(5, 40, mixed)) == 1


def test_options_parse_validate_run_and_resume(tmp_path, pretrain_args):
    from lab.tinybase import cli
    from lab.tinybase.config import PretrainConfig, parse
    from lab.tinybase.loop import Trainer
    from mirg.errors import MirgError

    assert parse(None, pretrain_args(tmp_path)).weights == UNIFORM_EXPR
    weights = parse(None, pretrain_args(tmp_path, "--expr-weights", "color=4,size+color=2")).weights
    assert weights == _weights(color=4.0, size_color=2.0)
    for bad in ("colour=2", "color=x", "color=0", "shape=-1"):
        with pytest.raises(MirgError, match="--expr-weights"):
            parse(None, pretrain_args(tmp_path, "--expr-weights", bad))
    with pytest.raises(MirgError, match="--min-objects"):
        PretrainConfig(out=str(tmp_path), steps=1, min_objects=4, max_objects=3).validate()

    out = tmp_path / "run"
    assert cli.main(pretrain_args(out, "--expr-weights", "color=4", "--min-objects", "2")) == 0
    metrics = json.loads((out / "final" / "metrics.json").read_text())
    assert metrics["config"]["min_objects"] == 2 and metrics["config"]["expr_weights"] == "color=4"
    card = (out / "final" / "MODEL_CARD.md").read_text()
    assert "objects per image: 2 to 5" in card and "weighted shape 1, color 4," in card
    resumed = Trainer(parse(None, pretrain_args(out, "--steps", "5")), resume=True, log=lambda _m: None)
    assert resumed.cfg.data.min_objects == 2 and resumed.cfg.data.expr_weights == _weights(color=4.0)


def test_data_options_default_to_the_data_configs_defaults():
    from lab.tinybase.config import PretrainConfig

    data, cfg = DataConfig(), PretrainConfig(out="x", steps=1).data_config()
    for k in ("refer_turns", "multi_image", "expr_weights", "min_objects", "stages", "image_sizes"):
        assert getattr(cfg, k) == getattr(data, k), k
