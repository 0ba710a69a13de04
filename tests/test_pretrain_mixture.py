"""mirg pretrain --expr-weights / --min-objects: what the referring questions name and how crowded training is."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest

from mirg.pretrain.tasks import (
    EXPR_NAMES,
    UNIFORM_EXPR,
    DataConfig,
    Stage,
    batch_samples,
    heldout_multi,
    heldout_refer,
    make_multi_sample,
    make_sample,
    sample_rng,
)
from mirg.pretrain.vision import expression_attributes

REFER = Stage((1, 5), (1.0, 0.0, 0.0))


def _weights(**kw: float) -> tuple[float, ...]:
    return tuple(kw.get(n.replace("+", "_"), 1.0) for n in EXPR_NAMES)


def _named(samples) -> Counter[str]:
    return Counter("+".join(expression_attributes(e)) for s in samples for e in s.meta["expressions"])


def test_expr_weights_shift_what_questions_name_and_keep_them_unambiguous():
    cfg = DataConfig()
    colour = replace(cfg, expr_weights=_weights(color=8.0))
    plain = [make_sample(sample_rng(3, i), cfg, REFER, "refer") for i in range(300)]
    heavy = [make_sample(sample_rng(3, i), colour, REFER, "refer") for i in range(300)]
    a, b = _named(plain), _named(heavy)
    share = [c["color"] / sum(c.values()) for c in (a, b)]
    assert share[0] < 0.2 and share[1] > 2 * share[0], (a, b)
    # every question still names its object and no other one
    for s in heavy:
        for e, t in zip(s.meta["expressions"], s.targets, strict=True):
            words = set(expression_attributes(e).values())
            assert [j for j, lab in enumerate(s.labels) if words <= set(lab.split())] == [t], (e, s.labels)
    # multi-image questions follow the weights too
    multi = [make_multi_sample(sample_rng(3, i), colour, REFER) for i in range(200)]
    assert _named(multi)["color"] / 200 > share[0] * 1.5
    # any uniform weighting is the default draw (the data of every earlier run)
    same = [
        make_sample(sample_rng(3, i), replace(cfg, expr_weights=(2.0,) * 6), REFER, "refer")
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
    from mirg.errors import MirgError
    from mirg.pretrain import cli
    from mirg.pretrain.loop import PretrainConfig, Trainer

    assert cli._config(pretrain_args(tmp_path)).expr_weights == UNIFORM_EXPR
    weights = cli._config(pretrain_args(tmp_path, "--expr-weights", "color=4,size+color=2")).expr_weights
    assert weights == _weights(color=4.0, size_color=2.0)
    for bad in ("colour=2", "color=x", "color=0", "shape=-1"):
        with pytest.raises(SystemExit):
            pretrain_args(tmp_path, "--expr-weights", bad)
    with pytest.raises(MirgError, match="--min-objects"):
        PretrainConfig(out=str(tmp_path), steps=1, min_objects=4, max_objects=3).validate()
    with pytest.raises(MirgError, match="--expr-weights"):
        PretrainConfig(out=str(tmp_path), steps=1, expr_weights=(1.0, 2.0)).validate()

    out = tmp_path / "run"
    assert cli.run(pretrain_args(out, "--expr-weights", "color=4", "--min-objects", "2")) == 0
    metrics = json.loads((out / "final" / "metrics.json").read_text())
    assert metrics["config"]["min_objects"] == 2 and metrics["config"]["expr_weights"][1] == 4.0
    card = (out / "final" / "MODEL_CARD.md").read_text()
    assert "objects per image: 2 to 5" in card and "weighted shape 1, color 4," in card
    resumed = Trainer(cli._config(pretrain_args(out, "--steps", "5")), resume=True, log=lambda _m: None)
    assert resumed.cfg.data.min_objects == 2 and resumed.cfg.data.expr_weights == _weights(color=4.0)


def test_data_options_are_data_config_fields_with_the_same_defaults():
    from dataclasses import fields

    from mirg.pretrain.loop import DATA_FIELDS, PretrainConfig

    data = {f.name: f.default for f in fields(DataConfig)}
    run = {f.name: f.default for f in fields(PretrainConfig)}
    for k in DATA_FIELDS:  # a resumed pre-option run gets DataConfig's default: it must be the CLI's as well
        assert k in data and k in run and data[k] == run[k], k
