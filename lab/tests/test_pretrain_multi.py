"""--multi-image of the tiny base's pretraining: referring samples over several images (data, batches, vision targets, metrics)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from types import SimpleNamespace

import pytest

from lab.tinybase.data import batch_samples, heldout_multi
from lab.tinybase.perception import DataConfig, Stage, make_multi_sample, perception_rng
from mirg.answers import get_dialect


def _attrs(expr: str) -> list[str]:
    return [w for w in expr.removeprefix("the ").split() if w != "object"]


def test_multi_image_samples_name_one_object_of_one_image_and_answer_in_its_pixels():
    cfg = DataConfig(image_sizes=(112, 224), size_weights=(1, 1))
    dialect = get_dialect("qwen2_5_vl")
    places, counts, named = set(), set(), 0
    for i in range(60):
        s = make_multi_sample(perception_rng(4, i), cfg, Stage((1, 5), (1, 0, 0)))
        scenes = s.scenes()
        m = len(scenes)
        counts.add(m)
        places.add((s.place, m))
        assert 2 <= m <= 3 and scenes[s.place - 1] is s and len(s.images) == m
        assert len({im.shape for im in s.images}) == 1  # one image size per prompt
        assert s.images[s.place - 1] is s.image
        ((content, completion),) = s.turns
        assert sum(part["type"] == "image" for part in content) == m
        ans = dialect.parse(completion)
        assert ans.ok and ans.image == s.place and tuple(ans.box) == s.boxes[s.targets[0]]
        # the expression fits the target and no other object of any image
        expr = _attrs(s.meta["expressions"][0])
        fits = [(j, label) for j, sc in enumerate(scenes) for label in sc.labels
                if all(w in label.split() for w in expr)]  # fmt: skip
        assert fits == [(s.place - 1, s.labels[s.targets[0]])], (expr, [sc.labels for sc in scenes])
        question = content[-1]["text"]
        named += f"in Image-{s.place}." in question
        assert re.findall(r"Image-(\d)", question) in (
            [],
            [str(s.place)],
        )  # only ever names the target's image
    assert counts == {2, 3} and {p for p, _ in places} == {1, 2, 3}
    assert 5 <= named <= 35  # one question in three names the image
    # a pure function of (seed, index)
    a = make_multi_sample(perception_rng(4, 7), cfg, Stage((1, 5), (1, 0, 0)))
    b = make_multi_sample(perception_rng(4, 7), cfg, Stage((1, 5), (1, 0, 0)))
    assert a.turns == b.turns and all((x == y).all() for x, y in zip(a.images, b.images, strict=True))


def test_multi_image_fraction_of_refer_batches_and_unchanged_single_image_data():
    cfg = DataConfig()
    multi = replace(cfg, multi_image=0.5)
    kinds = {"single": 0, "multi": 0}
    for step in range(80):
        base, mixed = batch_samples(2, step, 3, cfg, 0.9), batch_samples(2, step, 3, multi, 0.9)
        if mixed[0].context:
            assert base[0].task == "refer" and all(s.context for s in mixed)
            kinds["multi"] += 1
        else:  # every other batch is exactly the single-image run's
            assert [s.turns for s in base] == [s.turns for s in mixed]
            assert all((x.image == y.image).all() for x, y in zip(base, mixed, strict=True))
            kinds["single"] += base[0].task == "refer"
    assert kinds["multi"] > 10 and kinds["single"] > 10
    # held-out multi-image samples do not depend on the training mixture
    one = heldout_multi(9, 6, cfg)
    two = heldout_multi(9, 6, replace(multi, multi_images=(4, 6)))
    assert [s.turns for s in one] == [s.turns for s in two] and {len(s.images) for s in one} <= {2, 3}


def test_refer_metrics_want_the_targets_image():
    from lab.tinybase.evaluate import refer_metrics

    ans = '<answer>{{"image": {}, "bbox_2d": [10, 10, 40, 40]}}</answer>'.format
    single = SimpleNamespace(boxes=[(10, 10, 40, 40)], targets=[0])
    second = SimpleNamespace(boxes=[(10, 10, 40, 40)], targets=[0], place=2, context=[single])
    m = refer_metrics([single, single, second, second], [ans(1), ans(2), ans(2), ans(1)])
    assert m["acc@0.5"] == 0.5 and m["image_acc"] == 0.5
    assert m["acc@0.5_by_place"] == {"2/2": 0.5}


def test_multi_image_batches_feed_every_image_and_its_vision_targets(tmp_path):
    """A multi-image batch reaches the model with every image of every sample in prompt order, and ``--vision-aux``
    scores the tokens of each image against that image's own objects (the vision stage's loss on the same
    scenes, one image at a time)."""
    import torch

    from lab.tinybase.batching import to_device
    from lab.tinybase.loop import PretrainConfig, Trainer, llm_batch
    from lab.tinybase.vision import _grids, batch_targets

    t = Trainer(PretrainConfig(out=str(tmp_path / "run"), size="tiny", steps=1, batch_size=2, eval_every=0,
                               threads=1, vision_steps=0, vision_aux=1.0, vision_head="readout-pos",
                               final_eval_samples=2, multi_image=1.0))  # fmt: skip
    samples = batch_samples(5, 0, 3, t.cfg.data, 0.9)
    samples = [s for s in samples if s.context] or [
        make_multi_sample(perception_rng(5, i), t.cfg.data, Stage((1, 5), (1, 0, 0))) for i in range(3)
    ]
    batch = llm_batch(t.processor, samples, aux=True)
    scenes = [sc for s in samples for sc in s.scenes()]
    assert batch["image_grid_thw"].shape[0] == len(scenes) > len(samples)
    image_id = t.processor.tokenizer.convert_tokens_to_ids(t.processor.image_token)
    merged = int(batch["image_grid_thw"].prod(-1).sum()) // t.processor.image_processor.merge_size**2
    assert int((batch["input_ids"] == image_id).sum()) == merged
    caught = {}
    hook = t.model.model.visual.register_forward_hook(lambda _m, _i, o: caught.update(t=o.pooler_output))
    targets = batch.pop("vision_targets")
    with torch.no_grad():
        t.model(**to_device(t.processor, batch, t.model.device))
        assert torch.isclose(t.vision.tokens_loss(caught["t"], targets), t.vision.loss(scenes), atol=1e-5)
        # targets of the same scenes in another order do not fit the tokens
        wrong = batch_targets(scenes[1:] + scenes[:1], _grids(t.processor, batch["image_grid_thw"]))
        assert not torch.isclose(t.vision.tokens_loss(caught["t"], wrong), t.vision.loss(scenes), atol=1e-4)
    hook.remove()


def _args(out, **kw):
    argv = ["--out", str(out), "--size", "tiny", "--steps", "4", "--batch-size", "2", "--warmup", "1",
            "--eval-every", "4", "--eval-samples", "3", "--final-eval-samples", "4", "--migsynth-per-task", "0",
            "--log-every", "1", "--threads", "1", "--vision-steps", "0"]  # fmt: skip
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


def test_multi_image_option_runs_and_reports_on_the_card(tmp_path):
    from lab.tinybase import cli
    from lab.tinybase.config import parse
    from lab.tinybase.loop import PretrainConfig, Trainer
    from mirg.errors import MirgError

    assert parse(None, _args(tmp_path)).multi_image == 0.0
    with pytest.raises(MirgError, match="--multi-image"):
        PretrainConfig(out=str(tmp_path), steps=1, multi_image=1.5).validate()
    # --attn-aux supervises multi-image samples too (test_pretrain_bind.py)
    PretrainConfig(out=str(tmp_path), steps=1, multi_image=0.5, attn_aux=1.0).validate()

    out = tmp_path / "run"
    assert cli.main(_args(out, multi_image=1.0)) == 0
    metrics = json.loads((out / "final" / "metrics.json").read_text())
    mm = metrics["refer_multi_image"]
    assert mm["n"] == 4 and set(mm["acc@0.5_by_place"]) <= {"1/2", "2/2", "1/3", "2/3", "3/3"}
    assert metrics["config"]["multi_image"] == 1.0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["eval"]["multi_image"]["n"] for r in log if "eval" in r] == [3]
    card = (out / "final" / "MODEL_CARD.md").read_text()
    assert "## Held-out multi-image referring grounding" in card and "multi-image Acc@0.5" in card
    assert "100.0% of the referring batches" in card
    # a resumed run keeps the mixture it started with
    resumed = Trainer(parse(None, _args(out, steps=5)), resume=True, log=lambda _m: None)
    assert resumed.cfg.multi_image == 1.0 and resumed.cfg.data.multi_image == 1.0
    assert resumed.cfg.data.multi_images == (2, 3)
