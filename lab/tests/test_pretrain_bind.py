"""--attn-aux (lab.tinybase.bind): which positions are supervised, towards which token, and that the loss trains."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import pytest

from lab.tinybase.data import batch_samples
from lab.tinybase.perception import DataConfig


def _batch(processor, task: str, n: int = 4, data: DataConfig | None = None):
    from lab.tinybase.loop import llm_batch

    data = data or DataConfig()
    for step in range(200):
        samples = batch_samples(1, step, n, data, 0.9)
        if samples[0].task == task:
            return samples, llm_batch(processor, samples, attn=True)
    raise AssertionError(f"no {task} batch in 200 steps")


def test_attn_targets_are_the_box_tokens_and_the_named_objects_cell(tiny_model_dir):
    """Every answer's box is supervised, token for token, towards the image token whose cell holds the named
    object's centre (checked against the vision head's own cell targets); list/count batches get none."""
    import numpy as np

    from lab.tinybase.vision import _INDEX, targets
    from mirg.models.loading import load_processor

    proc = load_processor(tiny_model_dir)
    tok = proc.tokenizer
    samples, batch = _batch(proc, "refer", data=replace(DataConfig(), refer_turns=(2, 3)))
    at = batch["attn_targets"]
    ids = batch["input_ids"]
    m = proc.image_processor.merge_size
    image_id = tok.convert_tokens_to_ids(proc.image_token)
    answers = 0
    for r, s in enumerate(samples):
        rows = (at["rows"] == r).nonzero().flatten().tolist()
        pos = [int(at["pos"][i]) for i in rows]
        # the predicted tokens, split into runs of consecutive positions: one run per answer, in turn order
        runs = [[pos[0]]]
        for a, b in itertools.pairwise(pos):
            (runs[-1].append(b) if b == a + 1 else runs.append([b]))
        assert len(runs) == len(s.turns)
        _, gh, gw = batch["image_grid_thw"][r].tolist()
        grid = (gh // m, gw // m)
        for run, t, (_content, completion) in zip(runs, s.targets, s.turns, strict=True):
            box = s.boxes[t]
            predicted = tok.decode(ids[r, [q + 1 for q in run]])
            # the box's digits and separators, up to the token that closes it (']' may share a token)
            assert predicted.startswith(f"{box[0]}, {box[1]}, {box[2]}, {box[3]}]")
            assert "]" not in tok.decode(ids[r, run[-1]]) and f"[{predicted}" in completion
            idx = [rows[pos.index(q)] for q in run]
            i = idx[0]
            image_pos = [p for p in at["image_pos"][i].tolist() if p >= 0]
            assert image_pos == [j for j, x in enumerate(ids[r].tolist()) if x == image_id]
            # the cell the vision head says holds the object's full-attribute key
            presence, _, _ = targets(s, grid)
            key = _INDEX[(("size", "color", "shape"), *s.labels[t].split())]
            cells = np.nonzero(presence[:, key])[0].tolist()
            assert {int(at["target"][k]) for k in idx} == {cells[0]}
            assert [bool(at["first"][k]) for k in idx] == [True] + [False] * (len(idx) - 1)
            answers += 1
    assert answers == sum(len(s.turns) for s in samples) > len(samples)
    _, batch = _batch(proc, "list")
    assert batch["attn_targets"]["rows"].numel() == 0


def test_attn_targets_of_multi_image_samples_are_in_the_named_image(tiny_model_dir):
    """Several images per prompt: every image's tokens are the image positions, in order, and the target is the
    named object's cell in the image the answer names (each image's tokens are one run between its vision
    markers), whatever the image; single-image samples in the same collate keep their own targets."""
    from lab.tinybase.perception import Stage, make_multi_sample, perception_rng
    from mirg.models.loading import load_processor

    proc = load_processor(tiny_model_dir)
    tok = proc.tokenizer
    m = proc.image_processor.merge_size
    image_id = tok.convert_tokens_to_ids(proc.image_token)
    stage = Stage(objects=(2, 4), mix=(1.0, 0.0, 0.0))
    samples = [make_multi_sample(perception_rng(5, i), DataConfig(), stage) for i in range(6)]
    assert {s.place for s in samples} >= {1, 2} and {len(s.images) for s in samples} == {2, 3}
    from lab.tinybase.loop import llm_batch

    batch = llm_batch(proc, samples, attn=True)
    at, ids, grids = batch["attn_targets"], batch["input_ids"], batch["image_grid_thw"].tolist()
    row = 0
    for r, s in enumerate(samples):
        n = len(s.images)
        mine, row = grids[row : row + n], row + n
        img = [j for j, x in enumerate(ids[r].tolist()) if x == image_id]
        runs = [[img[0]]]  # the image tokens, split where a gap (the vision markers) separates two images
        for a, b in itertools.pairwise(img):
            (runs[-1].append(b) if b == a + 1 else runs.append([b]))
        assert len(runs) == n
        idx = (at["rows"] == r).nonzero().flatten().tolist()
        assert idx, "every multi-image answer has a box"
        _, gh, gw = mine[s.place - 1]
        cols = gw // m
        box = s.boxes[s.targets[0]]
        w, h = s.size
        cell = min(gh // m - 1, int((box[1] + box[3]) / 2 * (gh // m) / h)) * cols + min(
            cols - 1, int((box[0] + box[2]) / 2 * cols / w)
        )
        for i in idx:
            image_pos = [p for p in at["image_pos"][i].tolist() if p >= 0]
            assert image_pos == img
            assert image_pos[int(at["target"][i])] == runs[s.place - 1][cell]


def test_attn_loss_is_the_target_share_of_the_image_attention():
    """-log(share of the image attention on the target token): 0 when all of it is there, ln G when spread
    evenly, blind to how much attention goes to text, and its gradient raises the target's share."""
    import torch

    from lab.tinybase.bind import attn_hit, attn_loss

    t = 6
    tg = {"rows": torch.tensor([0, 0]), "pos": torch.tensor([4, 5]),
          "image_pos": torch.tensor([[1, 2, 3, -1], [1, 2, 3, -1]]), "target": torch.tensor([2, 1])}  # fmt: skip
    w = torch.zeros(1, 2, t, t)
    w[0, :, 4, 3] = 1.0  # position 4 looks only at image token 2 (its target)
    w[0, :, 5, 1:4] = 0.1  # position 5 spreads 0.3 evenly over the three image tokens, 0.7 on text
    w[0, :, 5, 0] = 0.7
    assert attn_loss(w, tg).item() == pytest.approx(0.5 * math.log(3), rel=1e-5)
    assert attn_hit(w, tg) == pytest.approx(0.5)  # position 5: the tie goes to the first token
    logits = torch.zeros(1, 2, t, t, requires_grad=True)
    loss = attn_loss(logits.softmax(-1), tg)
    loss.backward()
    g = logits.grad[0, 0, 4]
    assert g[3] < 0 and g[1] > 0 and g[2] > 0  # descent raises the target's logit, lowers the others
    # one head only: head 1 spreads position 4's image attention too, so the two heads' losses differ
    w[0, 1, 4, 1:4] = 1 / 3
    assert attn_loss(w, tg, (0,)).item() == pytest.approx(0.5 * math.log(3), rel=1e-5)
    assert attn_loss(w, tg, (1,)).item() == pytest.approx(math.log(3), rel=1e-5)
    assert attn_loss(w, tg).item() == pytest.approx(0.75 * math.log(3), rel=1e-5)
    assert attn_hit(w, tg, (0,)) == pytest.approx(0.5) and attn_hit(w, tg, (1,)) == pytest.approx(0.0)
    empty = {"rows": torch.zeros(0, dtype=torch.long), "pos": torch.zeros(0, dtype=torch.long),
             "image_pos": torch.zeros(0, 1, dtype=torch.long), "target": torch.zeros(0, dtype=torch.long)}  # fmt: skip
    assert attn_loss(w, empty).item() == 0.0 and math.isnan(attn_hit(w, empty))


def test_attn_aux_trains_the_last_layers_attention(tmp_path):
    """With --attn-aux the step moves the LLM towards looking at the named object's token: the attention loss on
    a fixed referring batch falls, the log records it, the run resumes with it, and the model's attention
    implementation is given back afterwards. Without it, the same steps leave that loss where it was."""
    import torch

    from lab.tinybase.batching import to_device
    from lab.tinybase.bind import attn_loss, first_digits
    from lab.tinybase.loop import PretrainConfig, Trainer
    from lab.tinybase.model import build_model_dir
    from mirg.errors import MirgError

    src = build_model_dir(tmp_path / "src", "tiny", seed=3)

    def cfg(out: str, **kw) -> PretrainConfig:
        base = dict(out=str(tmp_path / out), size="tiny", steps=30, batch_size=4, warmup=1, eval_every=0,
                    log_every=1, threads=1, vision_steps=0, final_eval_samples=4, lr=3e-3, init=str(src),
                    attn_aux=1.0, max_objects=2)  # fmt: skip
        return PretrainConfig(**{**base, **kw})

    def probe(t: Trainer, heads: tuple[int, ...] = (), at_first: bool = False) -> float:
        _, batch = _batch(t.processor, "refer", n=8, data=replace(t.cfg.data, refer_turns=(1, 1)))
        at = batch.pop("attn_targets")
        caught = {}
        layer = t.model.model.language_model.layers[-1].self_attn
        impl = t.model.config.text_config._attn_implementation
        t.model.set_attn_implementation({"text_config": "eager"})
        hook = layer.register_forward_hook(lambda _m, _i, o: caught.update(w=o[1]))
        with torch.no_grad():
            t.model(**to_device(t.processor, batch, t.model.device))
        hook.remove()
        t.model.set_attn_implementation({"text_config": impl})
        return float(attn_loss(caught["w"], first_digits(at) if at_first else at, heads))

    after = {}
    for w in (0.0, 5.0):
        t = Trainer(cfg(f"w{w}", attn_aux=w))
        before = probe(t)
        t.train()
        after[w] = probe(t)
        assert t.model.config.text_config._attn_implementation != "eager"
    assert after[5.0] < before - 0.3 and after[5.0] < after[0.0] - 0.3, (before, after)
    log = [json.loads(line) for line in (tmp_path / "w5.0" / "log.jsonl").read_text().splitlines()]
    hits = [r["attn_hit_ema"] for r in log if "attn_hit_ema" in r]
    assert hits and all(0.0 <= h <= 1.0 for h in hits)
    # every digit of every box: more positions than answers (at most 3 turns per sample)
    assert max(r["attn_positions"] for r in log if "attn_positions" in r) > 3 * 4
    # resume keeps the run's weight, whatever is given
    t = Trainer(cfg("w5.0", attn_aux=0.0, steps=31), resume=True)
    assert t.cfg.attn_aux == 5.0
    with pytest.raises(MirgError, match="0 or more"):
        cfg("x", attn_aux=-1.0).validate()
    # one head only, at first digits only, with multi-image batches: that head learns to look at the named
    # object, the others do not
    t = Trainer(cfg("h1", attn_aux=5.0, attn_aux_heads="1", attn_aux_at="first", multi_image=0.5, steps=60))
    heads = range(t.model.config.text_config.num_attention_heads)
    before = [probe(t, (h,), at_first=True) for h in heads]
    t.train()
    fall = [b - probe(t, (h,), at_first=True) for h, b in zip(heads, before, strict=True)]
    assert fall[1] > 0.4 and all(fall[1] > f + 0.3 for h, f in enumerate(fall) if h != 1), fall
    log = [json.loads(line) for line in (tmp_path / "h1" / "log.jsonl").read_text().splitlines()]
    assert 0 < max(r["attn_positions"] for r in log if "attn_positions" in r) <= 3 * 4  # one per answer
    resumed = Trainer(cfg("h1", attn_aux=0.0, steps=61), resume=True).cfg
    assert (resumed.heads, resumed.attn_aux_at) == ((1,), "first")
    with pytest.raises(MirgError, match="box or first"):
        cfg("x", attn_aux_at="last").validate()
    with pytest.raises(MirgError, match="heads 0 to"):
        Trainer(cfg("h9", attn_aux_heads="9", steps=1)).train()
    with pytest.raises(MirgError, match="give --attn-aux"):
        cfg("x", attn_aux=0.0, attn_aux_heads="1").validate()


def test_attn_aux_option_parses(tmp_path):
    from lab.tinybase.config import parse
    from mirg.errors import MirgError

    base = ["--out", str(tmp_path / "r"), "--steps", "3"]
    assert parse(None, [*base, "--attn-aux", "0.5"]).attn_aux == 0.5
    assert parse(None, base).attn_aux == 0.0 and parse(None, base).heads == ()
    assert parse(None, [*base, "--attn-aux", "1", "--attn-aux-heads", "3"]).heads == (3,)
    assert parse(None, [*base, "--attn-aux", "1", "--attn-aux-heads", "2,3"]).heads == (2, 3)
    assert parse(None, [*base, "--attn-aux", "1", "--attn-aux-at", "first"]).attn_aux_at == "first"
    assert parse(None, base).attn_aux_at == "box"
    for bad in ("x", "-1", "3,3"):
        with pytest.raises(MirgError, match="--attn-aux-heads"):
            parse(None, [*base, "--attn-aux", "1", "--attn-aux-heads", bad])
    with pytest.raises(MirgError, match="invalid choice"):
        parse(None, [*base, "--attn-aux", "1", "--attn-aux-at", "last"])
