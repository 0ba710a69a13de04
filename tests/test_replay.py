"""SFT replay (``replay_file``): perception samples written as trajectories ``mirg sft`` reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mirg.answers import get_dialect
from mirg.synth.perception import DataConfig, Stage, make_multi_sample, make_sample, perception_rng

ASSET = Path(__file__).resolve().parents[1] / "assets" / "tiny_base"


def test_replay_rows_are_perception_referring_samples_sft_reads(tmp_path):
    """Replay rows load as SFT trajectories; the first question uses the full mirg prompt; every answer is the box
    of the one object its expression names; the images are the pretraining's scenes, reproducible by seed."""
    from PIL import Image

    from mirg.errors import MirgError
    from mirg.prompting import instruction
    from mirg.training.data import load_trajectories
    from mirg.training.replay import REPLAY_SEED_OFFSET, write_replay

    path = write_replay(tmp_path / "a", 12, seed=3, image_size=224, max_objects=4)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    ds = load_trajectories(path)
    assert len(ds) == 12 and ds[0]["images"][0].size == (224, 224)
    dialect = get_dialect("qwen2_5_vl")
    stage = Stage((1, 4), (1.0, 0.0, 0.0))
    for i, row in enumerate(rows):
        s = make_sample(
            perception_rng(3 + REPLAY_SEED_OFFSET, i), DataConfig(image_sizes=(224,)), stage, "refer"
        )
        assert 1 <= len(s.labels) <= 4
        with Image.open(tmp_path / "a" / row["images"][0]) as im:
            assert (np.asarray(im.convert("RGB")) == s.image).all()
        users = [m for m in row["messages"] if m["role"] == "user"]
        answers = [m["content"][0]["text"] for m in row["messages"] if m["role"] == "assistant"]
        assert users[0]["content"][-1]["text"].endswith(instruction("qwen2_5_vl"))
        assert len(users) == len(answers) == len(s.turns)
        for answer, expr in zip(answers, s.meta["expressions"], strict=True):
            named = [k for k, label in enumerate(s.labels) if _names(expr, label)]
            ans = dialect.parse(answer)
            assert len(named) == 1 and ans.ok and ans.image == 1 and tuple(ans.box) == s.boxes[named[0]]
    again = write_replay(tmp_path / "b", 12, seed=3, image_size=224, max_objects=4)
    assert again.read_text() == path.read_text()
    assert (tmp_path / "a/images/replay-00005.png").read_bytes() == (
        tmp_path / "b/images/replay-00005.png"
    ).read_bytes()
    other = write_replay(tmp_path / "c", 12, seed=4, image_size=224, max_objects=4)
    assert other.read_text() != path.read_text()
    # several images: pretraining's multi-image referring samples (the target's scene at place k), in the mirg prompt
    multi_path = write_replay(tmp_path / "m", 12, seed=3, images=(2, 3))
    multi = [json.loads(line) for line in multi_path.read_text().splitlines()]
    stage5, places = Stage((1, 5), (1.0, 0.0, 0.0)), set()
    mcfg = DataConfig(image_sizes=(224,), mirg_prompt=1.0)
    for i, row in enumerate(multi):
        s = make_multi_sample(
            perception_rng(3 + REPLAY_SEED_OFFSET, i), mcfg, stage5, images=len(row["images"])
        )
        ans = dialect.parse(row["messages"][1]["content"][0]["text"])
        assert 2 <= len(row["images"]) <= 3 and ans.image == s.place and len(row["messages"]) == 2
        assert row["messages"] == s.messages() and tuple(ans.box) == s.boxes[s.targets[0]]
        assert row["messages"][0]["content"][-1]["text"].endswith(instruction("qwen2_5_vl"))
        for name, image in zip(row["images"], s.images, strict=True):
            with Image.open(tmp_path / "m" / name) as im:
                assert (np.asarray(im.convert("RGB")) == image).all()
        places.add((len(row["images"]), s.place))
    assert len(places) >= 4  # the target's place varies
    assert len(load_trajectories(multi_path)) == 12
    with pytest.raises(MirgError, match="images must be"):
        write_replay(tmp_path / "d", 2, images=(3, 2))

    from mirg.models.loading import load_processor

    # the shipped base's processor keeps 224 px and resizes 196 px (merge 8: 112 px blocks)
    if ASSET.is_dir():
        write_replay(tmp_path / "e", 1, image_size=224, processor=load_processor(ASSET))
        with pytest.raises(MirgError, match="resizes 196 px images"):
            write_replay(tmp_path / "e", 1, image_size=196, processor=load_processor(ASSET))
    for kw, msg in (
        ({"n": 0}, "must be >= 1"),
        ({"image_size": 200}, "multiple of 28"),
        ({"max_objects": 9}, "1..6"),
    ):
        with pytest.raises(MirgError, match=msg):
            write_replay(tmp_path / "d", **{"n": 2, **kw})


def _names(expression: str, label: str) -> bool:
    """The expression's attribute words ('the small blue object') are all words of the object's label."""
    return all(w in label.split() for w in expression.split()[1:] if w != "object")
