"""The tiny base's pretraining: data generator, a few real training steps (loss falls, resume continues), the shipped
base."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from lab.tinybase.data import batch_samples, heldout_refer
from lab.tinybase.perception import DataConfig, Stage, make_sample, perception_rng
from mirg.answers import get_dialect

ASSET = Path(__file__).resolve().parents[2] / "assets" / "tiny_base"
shipped = pytest.mark.skipif(
    not (ASSET / "model.safetensors").is_file(), reason="no shipped base under assets/tiny_base"
)


def test_samples_are_deterministic_and_consistent():
    cfg = DataConfig()
    a = batch_samples(3, 5, 4, cfg, 0.5)
    b = batch_samples(3, 5, 4, cfg, 0.5)
    assert [s.turns for s in a] == [s.turns for s in b]
    assert all((x.image == y.image).all() for x, y in zip(a, b, strict=True))
    dialect = get_dialect("qwen2_5_vl")
    for i in range(40):
        s = make_sample(perception_rng(0, i), cfg, Stage((1, 5), (1, 1, 1)))
        assert s.size == (112, 112)
        if s.task == "refer":
            for (_content, completion), t in zip(s.turns, s.targets, strict=True):
                ans = dialect.parse(completion)
                assert ans.ok and ans.image == 1 and tuple(ans.box) == s.boxes[t]
        elif s.task == "count":
            assert s.completion == f"<answer>{s.meta['count']}</answer>"
        else:
            assert s.completion.count("bbox_2d") == len(s.boxes)


def test_referring_expressions_are_unambiguous():
    for s in heldout_refer(11, 60, DataConfig()):
        expr = s.meta["expressions"][0].removeprefix("the ").split()
        matches = [label for label in s.labels if all(w in label.split() for w in expr if w != "object")]
        assert len(matches) == 1, (expr, s.labels)


def test_refer_turns_ask_about_distinct_objects():
    for lo, hi in ((1, 3), (2, 4), (5, 5)):
        cfg = DataConfig(refer_turns=(lo, hi))
        counts = set()
        for i in range(40):
            s = make_sample(perception_rng(1, i), cfg, Stage((1, 5), (1, 0, 0)), "refer")
            referable = sum(1 for k in range(len(s.labels)) if _unique(s.labels, k))
            assert len(set(s.targets)) == len(s.targets) == len(s.turns) == len(s.meta["expressions"])
            assert min(lo, len(s.labels), referable) <= len(s.turns) <= min(hi, len(s.labels))
            counts.add(len(s.turns))
        assert max(counts) == hi
    # held-out samples do not depend on the training run's turns
    same = [heldout_refer(5, 20, DataConfig(refer_turns=t)) for t in ((1, 3), (5, 5))]
    assert [s.turns[0] for s in same[0]] == [s.turns[0] for s in same[1]]


def _unique(labels: list[str], k: int) -> bool:
    """Some attribute subset of object k's label tells it apart from every other object."""
    from itertools import combinations

    mine = labels[k].split()
    others = [lab.split() for i, lab in enumerate(labels) if i != k]
    return any(
        all(any(o[j] != mine[j] for j in keys) for o in others)
        for r in (1, 2, 3)
        for keys in combinations(range(3), r)
    )


def test_refer_turns_option_parses_and_validates(tmp_path):
    from lab.tinybase.config import parse
    from mirg.errors import MirgError

    assert parse(None, _args(tmp_path)).turns == (1, 3)
    assert parse(None, _args(tmp_path, refer_turns="4")).turns == (4, 4)
    cfg = parse(None, _args(tmp_path, refer_turns="2:5"))
    assert cfg.turns == (2, 5) and cfg.data_config().refer_turns == (2, 5)
    for bad in ("0:2", "3:2", "x"):
        with pytest.raises(MirgError, match="--refer-turns"):
            parse(None, _args(tmp_path, refer_turns=bad))


def test_options_come_from_yaml_and_the_command_line_one_error_line(tmp_path):
    """One mechanism with ``mirg sft``'s: defaults < YAML < command line, dashed or underscored names, unknown keys
    refused in one line."""
    from lab.tinybase import cli
    from lab.tinybase.config import PretrainConfig, parse
    from mirg.errors import MirgError

    yaml = tmp_path / "run.yaml"
    yaml.write_text(f"out: {tmp_path / 'r'}\nsteps: 7\nmax_objects: 3\nexpr_weights: color=4\n")
    cfg = parse(str(yaml), ["--max-objects", "2", "--attn_aux", "1", "--attn-aux-heads", "3"])
    assert (cfg.steps, cfg.max_objects, cfg.heads) == (7, 2, (3,))
    assert cfg.weights == (1.0, 4.0, 1.0, 1.0, 1.0, 1.0) and cfg.data_config().stages[-1].objects == (1, 2)
    yaml.write_text("out: x\nsteps: 1\nrope_theta: 10\n")
    with pytest.raises(MirgError, match="unknown key"):
        parse(str(yaml))
    with pytest.raises(MirgError, match="unknown option"):
        parse(None, ["--out", "x", "--steps", "1", "--describe", "0.5"])
    with pytest.raises(MirgError, match="--steps"):
        parse(None, ["--out", "x"])
    with pytest.raises(MirgError, match="--grow-text"):
        parse(None, ["--out", "x", "--steps", "1", "--init", "y", "--grow-text", "256"])
    assert PretrainConfig(out="x", steps=1).validate().data_config().expr_weights == (1.0,) * 6
    assert cli.main(["--out", str(tmp_path / "r2"), "--steps", "1", "--vision-head", "readout"]) == 2


def _args(out: Path, **kw) -> list[str]:
    argv = ["--out", str(out), "--size", "tiny", "--steps", "12", "--batch-size", "4", "--lr", "3e-3",
            "--warmup", "2", "--eval-every", "0", "--final-eval-samples", "4", "--migsynth-per-task", "0",
            "--log-every", "1", "--threads", "1", "--vision-steps", "0"]  # fmt: skip
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)] if v is not True else [f"--{k.replace('_', '-')}"]
    return argv


def test_pretrain_few_steps_loss_falls_and_resumes(tmp_path, monkeypatch):
    """A few steps of the real command: the loss falls, state is saved, --resume continues to the new length."""
    from lab.tinybase import cli, loop

    out = tmp_path / "run"
    monkeypatch.setattr(loop, "code_version", lambda: "0.test (aaaaaaa)")  # the code a run starts with
    assert cli.main(_args(out)) == 0
    monkeypatch.setattr(loop, "code_version", lambda: "0.test (bbbbbbb)")  # a commit while it trained
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    metrics = json.loads((out / "final" / "metrics.json").read_text())
    assert metrics["step"] == 12 and "refer_short_prompt" in metrics
    assert metrics["code"] == "0.test (aaaaaaa)"  # what ran, not what the checkout held at the end
    assert (out / "final" / "MODEL_CARD.md").is_file() and (out / "final" / "model.safetensors").is_file()
    base = metrics["refer_mean_box_baseline"]
    assert f"mean box scores {100 * base['acc@0.5']:.1f}%" in (out / "final" / "MODEL_CARD.md").read_text()
    by_attrs = metrics["refer_short_prompt"]["acc@0.5_by_expression"]
    assert set(by_attrs) <= {"color", "shape", "color+shape", "size+shape", "size+color", "size+color+shape"}
    assert "by the attributes the expression names" in (out / "final" / "MODEL_CARD.md").read_text()
    # resume extends the same run (no retraining from scratch)
    assert cli.main(_args(out, steps=14, resume=True)) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r][-2:] == [13, 14]
    resumed = json.loads((out / "final" / "metrics.json").read_text())["code"]
    assert resumed == "0.test (aaaaaaa), resumed with 0.test (bbbbbbb)"
    # a run continued with --init names the run it started from (and that run's own chain) on its card
    first = json.loads((out / "final" / "metrics.json").read_text())
    nxt = tmp_path / "next"
    assert cli.main(_args(nxt, init=out / "final", steps=2)) == 0
    second = json.loads((nxt / "final" / "metrics.json").read_text())
    assert [r["command"] for r in second["lineage"]] == [first["command"]]
    assert second["lineage"][0]["steps"] == 14 and second["lineage"][0]["acc@0.5"] == pytest.approx(
        first["refer_short_prompt"]["acc@0.5"]
    )
    # ... and the exact weights it started from
    digest = hashlib.sha256((out / "final" / "model.safetensors").read_bytes()).hexdigest()
    assert second["lineage"][0]["weights_sha256"] == digest
    card = (nxt / "final" / "MODEL_CARD.md").read_text()
    assert f"weights sha256 {digest[:16]}" in card
    assert (
        "## Lineage" in card
        and f"1. `{first['command']}`" in card
        and "trained from random weights" not in card
    )
    assert not first["lineage"]


def test_pretrain_refuses_to_overwrite_a_run(tmp_path):
    from lab.tinybase.loop import PretrainConfig, Trainer
    from mirg.errors import MirgError

    (tmp_path / "model").mkdir()
    with pytest.raises(MirgError, match="--resume"):
        Trainer(PretrainConfig(out=str(tmp_path), size="tiny", steps=1))
    with pytest.raises(MirgError, match="--steps"):
        PretrainConfig(out=str(tmp_path)).validate()
    with pytest.raises(MirgError, match="--image-size"):
        PretrainConfig(out=str(tmp_path), steps=1, image_size=10).validate()
    with pytest.raises(MirgError, match="resizes it"):  # base-m8 needs multiples of 112 (14 px x merge 8)
        Trainer(PretrainConfig(out=str(tmp_path / "m8"), size="base-m8", steps=1, image_size=168))
    with pytest.raises(MirgError, match="--max-objects"):
        PretrainConfig(out=str(tmp_path), steps=1, max_objects=9).validate()


@shipped
def test_shipped_base_is_small_and_complete():
    files = {p.name for p in ASSET.iterdir()}
    assert {"config.json", "model.safetensors", "MODEL_CARD.md", "metrics.json", "tokenizer.json"} <= files
    assert sum(p.stat().st_size for p in ASSET.iterdir()) <= 25 * 2**20
    metrics = json.loads((ASSET / "metrics.json").read_text())
    assert metrics["refer_short_prompt"]["n"] >= 500


@shipped
@pytest.mark.slow
def test_shipped_base_grounds_single_images():
    """The shipped base answers held-out single-image referring questions in the qwen2_5_vl dialect and
    mostly hits the object (the model card reports the full 500-sample number)."""
    from lab.tinybase.evaluate import evaluate_refer
    from lab.tinybase.loop import HELDOUT_SEED_OFFSET
    from mirg.models.loading import load_model

    lm = load_model(ASSET)
    metrics = json.loads((ASSET / "metrics.json").read_text())
    recorded = metrics["refer_short_prompt"]["acc@0.5"]
    size = metrics["config"].get("image_size") or 112  # the held-out scenes of its card
    data = DataConfig(mirg_prompt=0.0, image_sizes=(size,), size_weights=(1.0,))
    samples = heldout_refer(HELDOUT_SEED_OFFSET + metrics["config"]["seed"], 48, data)
    m = evaluate_refer(lm.model, lm.processor, samples, batch_size=48)
    assert m["format"] >= 0.95
    assert m["image_acc"] >= 0.95
    assert m["acc@0.5"] >= recorded - 0.2, (m, recorded)
    assert m["acc@0.5"] >= 0.3, m


def test_refer_metrics_separate_misread_from_not_found():
    from types import SimpleNamespace

    from lab.tinybase.evaluate import refer_metrics

    s = SimpleNamespace(boxes=[(10, 10, 40, 40), (60, 60, 90, 90)], targets=[0])
    ans = '<answer>{{"image": 1, "bbox_2d": [{}, {}, {}, {}]}}</answer>'.format
    m = refer_metrics([s] * 4, [ans(10, 10, 40, 40), ans(61, 60, 90, 91), ans(0, 0, 5, 5), "garbage"])
    assert m["acc@0.5"] == 0.25 and m["other_object@0.5"] == 0.25 and m["format"] == 0.75
    assert m["acc@0.5_by_objects"] == {"2": 0.25} and "acc@0.5_by_expression" not in m
    s.meta = {"expressions": ["the small blue triangle"]}
    t = SimpleNamespace(boxes=s.boxes, targets=[1], meta={"expressions": ["the red object"]})
    m = refer_metrics([s, s, t], [ans(10, 10, 40, 40), "garbage", ans(60, 60, 90, 90)])
    assert m["acc@0.5_by_expression"] == {"color": 1.0, "size+color+shape": 0.5}


def test_mean_box_baseline_answers_the_mean_target_box():
    from types import SimpleNamespace

    from lab.tinybase.evaluate import mean_box_baseline

    near = [SimpleNamespace(boxes=[b], targets=[0]) for b in [(10, 10, 40, 40), (12, 10, 42, 40)]]
    assert mean_box_baseline(near)["box"] == [11, 10, 41, 40] and mean_box_baseline(near)["acc@0.5"] == 1.0
    apart = [SimpleNamespace(boxes=[b], targets=[0]) for b in [(0, 0, 20, 20), (80, 80, 100, 100)]]
    assert mean_box_baseline(apart)["acc@0.5"] == 0.0


def test_vision_targets_follow_the_scene():
    from lab.tinybase.vision import KEYS, targets

    s = make_sample(perception_rng(0, 5), DataConfig(), Stage((3, 3), (0, 1, 0)), "list")
    presence, boxes, mask = targets(s)  # one cell: the whole image
    assert presence.shape == mask.shape == (1, len(KEYS)) and boxes.shape == (1, len(KEYS), 4)
    presence, boxes, mask = presence[0], boxes[0], mask[0]
    # every object turns on its full-attribute key, with its box in units of the image side
    for label, box in zip(s.labels, s.boxes, strict=True):
        i = KEYS.index((("size", "color", "shape"), *label.split()))
        assert presence[i] == 1
        if mask[i]:
            assert boxes[i] * 112 == pytest.approx(box)
    assert presence.sum() >= 6 and mask.sum() <= presence.sum()  # 6 families, at least one key each
    colours = [label.split()[1] for label in s.labels]
    for c in set(colours):
        assert mask[KEYS.index((("color",), c))] == (colours.count(c) == 1)


def test_vision_targets_per_token_cell():
    """With a grid, an object belongs to the cell (raster order) holding its box centre, and its box stays in
    units of the whole image."""
    from lab.tinybase.vision import KEYS, targets

    s = make_sample(perception_rng(0, 7), DataConfig(), Stage((4, 4), (0, 1, 0)), "list")
    presence, boxes, mask = targets(s, (2, 3))
    assert presence.shape == (6, len(KEYS)) and boxes.shape == (6, len(KEYS), 4)
    full = [i for i, k in enumerate(KEYS) if k[0] == ("size", "color", "shape")]
    owned = set()
    for label, box in zip(s.labels, s.boxes, strict=True):
        i = KEYS.index((("size", "color", "shape"), *label.split()))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        cell = int(cy * 2 / 112) * 3 + int(cx * 3 / 112)
        owned.add((cell, i))
        assert presence[cell, i] == 1
        if mask[cell, i]:
            assert boxes[cell, i] * 112 == pytest.approx(box)
    assert presence[:, full].sum() == len(owned)  # nothing is on in a cell that holds no such object
    cells = {c for c, _ in owned}
    # cells without an object centre predict nothing
    for other in set(range(6)) - cells:
        assert presence[other].sum() == 0 and mask[other].sum() == 0


def test_vision_loss_wants_zero_boxes_where_a_cell_holds_no_such_object():
    """The box readout is additive over tokens: a head that is right where objects are but outputs a box
    for keys absent from the cell is penalised, and the exact additive output has (almost) no loss."""
    import torch

    from lab.tinybase.vision import VisionStage, targets

    s = make_sample(perception_rng(0, 7), DataConfig(), Stage((3, 3), (0, 1, 0)), "list")
    presence, boxes, mask = (torch.tensor(x) for x in targets(s, (2, 2)))
    exact = torch.cat([(presence * 40 - 20).unsqueeze(-1), boxes * mask.unsqueeze(-1)], -1)
    assert float(VisionStage.loss_from(exact, presence, boxes, mask)) < 1e-6
    out = exact.clone()
    out[..., 1:] += (1 - presence).unsqueeze(-1) * 0.3  # a box where the cell has no such object
    assert float(VisionStage.loss_from(out, presence, boxes, mask)) > 0.1


def test_readout_head_reads_the_box_the_key_names(tiny_model_dir):
    """``--vision-head readout-pos``: targets are the keys exactly one object has, with that object's box; the loss
    on tokens caught elsewhere is the stage's own; and trained on a few scenes it gives each key its own
    object's box, which a head that ignored the key could not (the error falls far below the per-image mean)."""
    import torch

    from lab.tinybase.vision import KEYS, VisionStage, llm_targets, unique_keys
    from mirg.models.loading import load_model

    s = make_sample(perception_rng(0, 7), DataConfig(), Stage((3, 3), (0, 1, 0)), "list")
    uniq = dict(unique_keys(s))
    w, h = s.size
    for label, box in zip(s.labels, s.boxes, strict=True):
        size, color, shape = label.split()
        full = KEYS.index((("size", "color", "shape"), size, color, shape))
        assert uniq[full] == (box[0] / w, box[1] / h, box[2] / w, box[3] / h)
    colors = [label.split()[1] for label in s.labels]
    for c in set(colors):  # a colour two objects share names neither
        assert (KEYS.index((("color",), c)) in uniq) == (colors.count(c) == 1)

    torch.manual_seed(0)
    loaded = load_model(tiny_model_dir, device="cpu", dtype="float32")
    stage = VisionStage(loaded.model, loaded.processor, "readout-pos")
    samples = [
        make_sample(perception_rng(1, i), DataConfig(), Stage((2, 3), (0, 1, 0)), "list") for i in range(4)
    ]
    tokens, tg = stage._tokens(samples)
    again = llm_targets(loaded.processor, samples, tg["image_grid_thw"])
    assert torch.isclose(stage.tokens_loss(tokens, again), stage.loss(samples))
    mean = (tg["key_boxes"] * tg["key_mask"][..., None]).sum(1) / tg["key_mask"].sum(1)[:, None]
    ignore_key = float(
        ((mean[:, None] - tg["key_boxes"]).abs().mean(-1) * tg["key_mask"]).sum() / tg["key_mask"].sum()
    )
    opt = torch.optim.AdamW(stage.parameters(), lr=5e-3)
    for _ in range(100):
        loss = stage.loss(samples)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert stage.box_error(samples) / samples[0].size[0] < 0.5 * ignore_key, (
        stage.box_error(samples),
        ignore_key,
    )


def test_expression_key_names_the_attributes_the_expression_uses():
    from lab.tinybase.vision import KEYS, expression_key

    assert KEYS[expression_key("the small blue triangle")] == (
        ("size", "color", "shape"),
        "small",
        "blue",
        "triangle",
    )
    assert KEYS[expression_key("the blue object")] == (("color",), "blue")
    assert KEYS[expression_key("the large cross")] == (("size", "shape"), "large", "cross")
    for s in heldout_refer(3, 20, DataConfig()):  # every generated expression maps to its target's attributes
        size, color, shape = s.labels[s.targets[0]].split()
        fam, *vals = KEYS[expression_key(s.meta["expressions"][0])]
        assert vals == [{"size": size, "color": color, "shape": shape}[a] for a in fam]


def test_readout_pos_head_knows_the_cell_the_tokens_cannot_tell():
    """``readout-pos``: tokens that say *what* is in their cell but not *which* cell (as the vision tower's, which
    sees only relative positions) give a readout without the cell embedding (held at its start, zero) no way to the
    box; with it, the head learns it."""
    import torch

    from lab.tinybase.vision import _readout_head

    torch.manual_seed(0)
    n, t, d = 64, 4, 16
    where = torch.randint(0, t, (n,))
    tokens = torch.zeros(n, t, d)
    tokens[torch.arange(n), where, 0] = 1.0  # "an object is here", the same in every cell
    cells = torch.tensor(
        [[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]]
    )
    boxes = cells[where][:, None]  # [n, 1, 4]: the object's cell
    keys = torch.zeros(n, 1, dtype=torch.long)
    err = {}
    for pos in (False, True):
        head = _readout_head(d)
        head.cell.requires_grad_(pos)
        opt = torch.optim.AdamW(head.parameters(), lr=1e-2)
        for _ in range(300):
            loss = (head(tokens, keys) - boxes).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        err[pos] = float((head(tokens, keys) - boxes).abs().mean().detach())
    assert err[True] < 0.03 and err[False] > 0.15, err


def test_vision_stage_trains_only_the_vision_tower_and_resumes(tmp_path):
    """The vision stage's loss falls, it changes the vision tower and not the LLM, and an interrupted stage
    resumes without repeating or skipping a step."""
    import torch

    from lab.tinybase.loop import PretrainConfig, Trainer

    def cfg() -> PretrainConfig:
        return PretrainConfig(out=str(tmp_path / "run"), size="tiny", steps=2, batch_size=2, warmup=1,
                              eval_every=0, log_every=1, threads=1, vision_steps=12, vision_lr=3e-3,
                              vision_batch_size=8)  # fmt: skip

    t = Trainer(cfg())
    llm0 = {k: v.clone() for k, v in t.model.model.language_model.state_dict().items()}
    vis0 = {k: v.clone() for k, v in t.model.model.visual.state_dict().items()}
    t.train(max_steps=5)
    assert t.state["vision_step"] == 5 and t.state["step"] == 0
    llm1 = t.model.model.language_model.state_dict()
    assert all(torch.equal(llm0[k], llm1[k]) for k in llm0)
    assert any(not torch.equal(vis0[k], v) for k, v in t.model.model.visual.state_dict().items())
    t = Trainer(replace(cfg(), workers=1), resume=True)  # the rest with batches built by a data worker
    assert t.workers == 1
    t.train()
    assert t.state["vision_step"] == 12 and t.state["step"] == 2
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    vis = [r for r in log if "vision_step" in r]
    assert [r["vision_step"] for r in vis] == list(range(1, 13))
    losses = [r["loss"] for r in vis]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
    assert "heldout_box_error_px" in vis[-1]


def test_vision_aux_keeps_the_head_on_the_llm_stages_tokens(tmp_path):
    """``--vision-aux``: the head's loss on the tokens the LLM forward computed is the vision stage's own loss on
    the same images (targets line up with tokens), the head carries over from the vision stage, is saved and
    restored on resume, keeps learning, and its gradient reaches the vision tower."""
    import torch

    from lab.tinybase.batching import to_device
    from lab.tinybase.loop import PretrainConfig, Trainer, llm_batch
    from lab.tinybase.model import build_model_dir
    from mirg.errors import MirgError

    def cfg(out: str, **kw) -> PretrainConfig:
        base = dict(out=str(tmp_path / out), size="tiny", steps=4, batch_size=2, warmup=1, eval_every=0,
                    log_every=1, threads=1, vision_steps=2, vision_batch_size=4, vision_aux=1.0,
                    final_eval_samples=4)  # fmt: skip
        return PretrainConfig(**{**base, **kw})

    t = Trainer(cfg("run"))
    samples = batch_samples(5, 0, 3, t.cfg.data, 0.9)
    batch = llm_batch(t.processor, samples, aux=True)
    caught = {}
    hook = t.model.model.visual.register_forward_hook(lambda _m, _i, o: caught.update(t=o.pooler_output))
    targets = batch.pop("vision_targets")
    with torch.no_grad():
        t.model(**to_device(t.processor, batch, t.model.device))
        assert torch.isclose(t.vision.tokens_loss(caught["t"], targets), t.vision.loss(samples), atol=1e-5)
    hook.remove()

    t.train(max_steps=3)  # the vision stage (2 steps) and one LLM step
    assert t.state["vision_step"] == 2 and t.state["step"] == 1
    head = {k: v.clone() for k, v in t.vision.head.state_dict().items()}
    t = Trainer(cfg("run"), resume=True)
    assert all(torch.equal(head[k], v) for k, v in t.vision.head.state_dict().items())
    assert t.aux_opt.state  # the head's optimizer state came back too
    t.train()
    assert t.state["step"] == 4
    assert any(not torch.equal(head[k], v) for k, v in t.vision.head.state_dict().items())
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "vision_aux_ema" in r] == [1, 2, 3, 4]
    # the head travels with a checkpoint (safetensors next to it) to a run that continues it with --init
    ck = tmp_path / "run" / "model"
    t.save_vision_head(ck)
    cont = Trainer(cfg("cont", init=str(ck), vision_steps=0))
    assert all(
        torch.equal(v, cont.vision.head.state_dict()[k]) for k, v in t.vision.head.state_dict().items()
    )
    assert not (tmp_path / "cont" / "model" / "vision_head.safetensors").exists()

    # the aux loss is part of the step: from the same start, the vision tower moves differently without it
    src = build_model_dir(tmp_path / "src", "tiny", seed=3)
    after = {}
    for w in (0.0, 1.0):
        t = Trainer(cfg(f"w{w}", steps=1, vision_steps=0, vision_aux=w, init=str(src)))
        t.train()
        after[w] = {k: v.clone() for k, v in t.model.model.visual.state_dict().items()}
    assert any(not torch.equal(after[0.0][k], after[1.0][k]) for k in after[0.0])
    # a fresh head (none beside the --init checkpoint) follows --seed, whatever torch's RNG did before
    heads = []
    for out, seed in (("s1", 5), ("s2", 5), ("s3", 6)):
        torch.rand(int(torch.randint(1, 9, (1,))))  # moves the global RNG on, as other code in a process may
        t = Trainer(cfg(out, steps=1, vision_steps=0, seed=seed, init=str(src)))
        heads.append(t.vision.head.state_dict())
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    assert any(not torch.equal(heads[0][k], heads[2][k]) for k in heads[0])
    with pytest.raises(MirgError, match="0 or more"):
        cfg("x", vision_aux=-1.0).validate()


def test_data_workers_build_the_same_batches(tmp_path):
    """Batches built ahead by worker processes are the in-process ones, in step order, from any start step."""
    from functools import partial

    import torch

    from lab.tinybase.loop import PretrainConfig, _llm_batch, _vision_batch, data_workers, prefetched
    from mirg.errors import MirgError
    from mirg.models.loading import load_processor
    from mirg.models.tiny import build_tiny_model

    proc = load_processor(build_tiny_model(tmp_path / "m", size="tiny", seed=0))
    for fn in (
        partial(_llm_batch, proc, 3, 4, DataConfig(), 10, aux=False),
        partial(_vision_batch, proc, 3, 4, DataConfig()),
    ):
        here = list(prefetched(fn, 7, 10, 0))
        ahead = list(prefetched(fn, 7, 10, 2))
        assert len(here) == len(ahead) == 3
        for a, b in zip(here, ahead, strict=True):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert not torch.equal(here[0]["pixel_uint8"], here[1]["pixel_uint8"])
    cfg = PretrainConfig(out=str(tmp_path), steps=5)
    assert data_workers(cfg, "cpu") == 0 and data_workers(replace(cfg, workers=3), "cpu") == 3
    with pytest.raises(MirgError, match="--workers"):
        PretrainConfig(out=str(tmp_path), steps=1, workers=-1).validate()


def test_compact_pixels_restore_the_processors_values(tmp_path):
    """Workers hand over uint8 patches; on the device they become exactly the processor's pixel_values."""
    import torch

    from lab.tinybase.batching import collate, to_device
    from lab.tinybase.vision import prepare
    from mirg.models.loading import load_processor
    from mirg.models.tiny import build_tiny_model

    proc = load_processor(build_tiny_model(tmp_path / "m", size="tiny", seed=0))
    samples = batch_samples(1, 2, 3, DataConfig(image_sizes=(84, 112), size_weights=(1, 1)), 0.5)
    for full, small in ((collate(proc, samples), collate(proc, samples, compact=True)),
                        (prepare(proc, samples), prepare(proc, samples, compact=True))):  # fmt: skip
        assert small["pixel_uint8"].dtype == torch.uint8 and "pixel_values" not in small
        assert small["pixel_uint8"].nbytes * 8 == full["pixel_values"].nbytes
        back = to_device(proc, small, torch.device("cpu"))
        assert back.keys() == full.keys()
        torch.testing.assert_close(back["pixel_values"], full["pixel_values"], rtol=0, atol=1e-5)
        assert all(torch.equal(back[k], full[k]) for k in full if k != "pixel_values")


def test_init_starts_from_a_given_checkpoint(tmp_path):
    import torch

    from lab.tinybase.loop import PretrainConfig, Trainer
    from lab.tinybase.model import build_model_dir
    from mirg.errors import MirgError
    from mirg.models.loading import load_model

    src = build_model_dir(tmp_path / "src", "tiny", seed=7)
    t = Trainer(PretrainConfig(out=str(tmp_path / "run"), size="tiny", steps=1, init=str(src), threads=1))
    ref = load_model(src).model.state_dict()
    got = t.model.state_dict()
    assert set(ref) == set(got) and all(torch.equal(ref[k], got[k]) for k in ref)
    fresh = Trainer(PretrainConfig(out=str(tmp_path / "fresh"), size="tiny", steps=1, threads=1))
    assert not all(torch.equal(ref[k], v) for k, v in fresh.model.state_dict().items())
    with pytest.raises(MirgError, match="--init"):
        Trainer(PretrainConfig(out=str(tmp_path / "run2"), steps=1, init=str(tmp_path / "nowhere")))
