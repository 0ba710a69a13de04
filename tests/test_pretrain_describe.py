"""mirg pretrain --describe: questions answered with an object's full label, asked by its box or a partial
expression; their batches, held-out set, scoring and CLI."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace

import pytest

from mirg.pretrain.metrics import describe_metrics
from mirg.pretrain.tasks import (
    DataConfig,
    Stage,
    batch_samples,
    heldout_describe,
    heldout_multi,
    heldout_refer,
    make_describe_sample,
    sample_rng,
)
from mirg.pretrain.vision import expression_attributes

STAGE = Stage((1, 5), (1.0, 0.0, 0.0))


def _question(content) -> str:
    return [p["text"] for p in content if p["type"] == "text"][-1].strip()


def test_describe_questions_name_one_object_and_answer_its_label():
    samples = [make_describe_sample(sample_rng(2, i), DataConfig(), STAGE) for i in range(200)]
    kinds: Counter[str] = Counter()
    for s in samples:
        assert s.task == "describe" and len(s.turns) == len(s.targets) == len(s.meta["questions"])
        assert len(set(s.targets)) == len(s.targets)  # distinct objects
        for (content, answer), t, kind in zip(s.turns, s.targets, s.meta["questions"], strict=True):
            assert answer == f"<answer>{s.labels[t]}</answer>"
            q = _question(content)
            kinds[kind] += 1
            if kind == "box":
                b = s.boxes[t]
                assert q == f"What is the object at [{b[0]}, {b[1]}, {b[2]}, {b[3]}]?"
                continue
            e = re.fullmatch(r"Describe (the .+)\.", q).group(1)
            named = expression_attributes(e)
            assert "+".join(named) == kind and len(named) < 3  # never the whole label, which is the answer
            fits = [j for j, lab in enumerate(s.labels) if set(named.values()) <= set(lab.split())]
            assert fits == [t], (e, s.labels)
    assert kinds["box"] > 0.4 * sum(kinds.values()) and len(kinds) >= 5, kinds
    # colour weighting reaches the expressions of describe questions as well
    heavy = replace(DataConfig(), expr_weights=(1.0, 8.0, 1.0, 1.0, 1.0, 1.0))
    colour = Counter(
        k for i in range(200) for k in make_describe_sample(sample_rng(2, i), heavy, STAGE).meta["questions"]
    )
    assert colour["color"] > 2 * kinds["color"], (colour, kinds)


def test_describe_batches_replace_a_fraction_and_leave_held_out_data_alone():
    cfg = replace(DataConfig(), describe=0.3, multi_image=0.3)
    tasks = Counter(batch_samples(1, step, 2, cfg, 0.5)[0].task for step in range(200))
    assert 0.2 < tasks["describe"] / 200 < 0.4, tasks
    assert {"refer", "list", "count"} <= set(tasks)
    off = Counter(batch_samples(1, step, 2, DataConfig(), 0.5)[0].task for step in range(200))
    assert "describe" not in off
    for fn in (heldout_refer, heldout_multi):
        assert [s.turns for s in fn(5, 30, cfg)] == [s.turns for s in fn(5, 30, DataConfig())]
    one, two = (
        heldout_describe(5, 30, DataConfig()),
        heldout_describe(5, 30, replace(cfg, refer_turns=(3, 3))),
    )
    assert [s.turns for s in one] == [s.turns for s in two]


def test_describe_metrics_score_labels_words_and_garbage():
    samples = heldout_describe(7, 4, DataConfig())
    truth = [s.labels[s.targets[0]].split() for s in samples]
    size, colour, shape = truth[1]
    wrong_colour = "blue" if colour != "blue" else "red"
    completions = [
        f"<answer>{' '.join(truth[0])}</answer>",
        f"<answer>{size} {wrong_colour} {shape}</answer>",
        "I cannot tell {",  # garbage: a miss, not a crash
        f"{' '.join(truth[3])}",  # no answer tags: a miss
    ]
    m = describe_metrics(samples, completions)
    assert m["n"] == 4 and m["acc"] == 0.25
    assert m["color"] == 0.25 and m["shape"] == 0.5 and m["size"] == 0.5
    kinds = [s.meta["questions"][0] for s in samples]
    exact = dict.fromkeys(kinds, 0.0)
    exact[kinds[0]] += 1.0  # only the first answer is right
    assert m["by_question"] == pytest.approx({k: v / kinds.count(k) for k, v in exact.items()})
    assert sum(m["n_by_question"].values()) == 4 and set(m["n_by_question"]) == set(m["by_question"])


def test_describe_option_validates_runs_reports_and_resumes(tmp_path, pretrain_args):
    from mirg.errors import MirgError
    from mirg.pretrain import cli
    from mirg.pretrain.loop import PretrainConfig, Trainer

    assert cli._config(pretrain_args(tmp_path)).describe == 0.0
    for bad in (-0.1, 1.5):
        with pytest.raises(MirgError, match="--describe"):
            PretrainConfig(out=str(tmp_path), steps=1, describe=bad).validate()
    with pytest.raises(MirgError, match="--describe"):
        PretrainConfig(out=str(tmp_path), steps=1, describe=0.2, attn_aux=1.0).validate()

    out = tmp_path / "run"
    assert cli.run(pretrain_args(out, "--describe", "1")) == 0
    metrics = json.loads((out / "final" / "metrics.json").read_text())
    assert metrics["config"]["describe"] == 1.0
    assert metrics["describe"]["n"] == 3 and 0.0 <= metrics["describe"]["acc"] <= 1.0
    card = (out / "final" / "MODEL_CARD.md").read_text()
    assert "describe questions in 100.0% of the batches" in card and "## Held-out describe questions" in card
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in log)
    resumed = Trainer(cli._config(pretrain_args(out, "--steps", "5")), resume=True, log=lambda _m: None)
    assert resumed.cfg.data.describe == 1.0
    # a run without the option has no describe section
    plain = tmp_path / "plain"
    assert cli.run(pretrain_args(plain)) == 0
    assert "describe" not in json.loads((plain / "final" / "metrics.json").read_text())
