"""Describe rows for a demo run's SFT set (the RL study's sixth pass): for every SFT sample one more row on the
same images, "What is the object at [x1, y1, x2, y2] in Image-k?" about a random annotated object (pixels of the
resized image, as the answers' boxes), answered "It is the medium yellow square." Appended to
``RUN/traj/trajectories.jsonl``; the demo's SFT stage keys on that file's hash, so a rerun of the demo retrains SFT
and everything after it.

    python -m lab.rl_study.describe_rows runs/rl_study/R13
    python -m lab.rl_study.describe_rows --probe runs/rl_study/R13/sft --samples runs/rl_study/R13/data/val/samples.jsonl

``--probe`` asks a model the rows' question about a random annotated object of every fourth sample (greedy) and
counts answers that give the object exactly, and its shape and colour words.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from mirg.sample import read_samples
from mirg.trajectories.describe import describe

MARK = "describe"  # the rows' mode, so a second call adds nothing


def describe_row(
    record: dict[str, Any], objects: list[list[Any]], rng: random.Random
) -> dict[str, Any] | None:
    """A describe row on ``record``'s images, or None when the sample has no annotated object."""
    choices = [(k, o) for k, per in enumerate(objects, start=1) for o in per]
    if not choices:
        return None
    k, o = rng.choice(choices)
    w, h = record["resized_sizes"][k - 1]
    box = [round(o.box[0] * w), round(o.box[1] * h), round(o.box[2] * w), round(o.box[3] * h)]
    user = [dict(p) for p in record["messages"][0]["content"]]
    user[-1] = {"type": "text", "text": f"\nWhat is the object at {json.dumps(box)} in Image-{k}?"}
    answer = f"It is the {describe(o)}."
    return {
        **{key: record[key] for key in ("task", "source", "images", "dialect", "resized_sizes")},
        "id": f"{record['id']}-describe",
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "mode": MARK,
    }


def add_rows(run: Path, seed: int = 0) -> int:
    """Append one describe row per trajectory of ``run`` (a demo folder); returns the rows added."""
    traj = run / "traj" / "trajectories.jsonl"
    records = [json.loads(line) for line in traj.read_text(encoding="utf-8").splitlines() if line.strip()]
    if any(r.get("mode") == MARK for r in records):
        return 0
    samples = {s.id: s for s in read_samples(run / "data" / "train" / "samples.jsonl")}
    rng = random.Random(seed)
    rows = [row for r in records if (row := describe_row(r, samples[r["id"]].objects, rng)) is not None]
    with traj.open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return len(rows)


def probe(model: Path, samples_path: Path, every: int = 4, seed: int = 1) -> dict[str, int]:
    """How well ``model`` answers the rows' question on ``samples_path`` (see the module docstring)."""
    import torch

    from mirg.images import open_images
    from mirg.models.loading import load_model
    from mirg.prompting import prompt_text, user_content

    loaded = load_model(model)
    rng = random.Random(seed)
    count = {"asked": 0, "exact": 0, "shape": 0, "colour": 0}
    for s in read_samples(samples_path)[::every]:
        k, o = rng.choice([(k, o) for k, per in enumerate(s.objects, start=1) for o in per])
        images = open_images(s.images, samples_path.parent)
        w, h = images[k - 1].size
        box = [round(o.box[0] * w), round(o.box[1] * h), round(o.box[2] * w), round(o.box[3] * h)]
        user = user_content(len(images), "", loaded.dialect)[:-1]
        user.append({"type": "text", "text": f"\nWhat is the object at {json.dumps(box)} in Image-{k}?"})
        inputs = loaded.processor(text=[prompt_text(loaded.processor, [{"role": "user", "content": user}])],
                                  images=[images], return_tensors="pt")  # fmt: skip
        with torch.inference_mode():
            out = loaded.model.generate(**inputs, max_new_tokens=16, do_sample=False)
        answer = loaded.processor.tokenizer.decode(
            out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
        )
        words = answer.replace(".", " ").split()
        count["asked"] += 1
        count["exact"] += f"the {describe(o)}." in answer
        count["shape"] += o.category in words
        count["colour"] += o.attributes.get("color") in words
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, nargs="?", help="a demo folder (its traj/ and data/train/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe", type=Path, help="a model folder to ask instead")
    ap.add_argument("--samples", type=Path, help="with --probe: the Sample JSONL to ask about")
    a = ap.parse_args(argv)
    if a.probe:
        print(probe(a.probe, a.samples))
    else:
        print(f"added {add_rows(a.run, a.seed)} describe rows to {a.run / 'traj' / 'trajectories.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
