"""lab.rl_study.errors on a hand-made sample: each outcome and each naming class comes out where it should."""

from __future__ import annotations

import json

from lab.rl_study.errors import naming, outcomes

TARGET = [0.1, 0.1, 0.4, 0.4]
OTHER = [0.6, 0.6, 0.9, 0.9]


def _obj(category, color, size, box):
    return {"category": category, "attributes": {"color": color, "size": size}, "box": box}


def _write(tmp_path, answers):
    objects = [[_obj("cross", "green", "large", [0.5, 0.1, 0.8, 0.4])],
               [_obj("cross", "green", "large", TARGET), _obj("ring", "blue", "small", OTHER)]]  # fmt: skip
    samples, preds = [], []
    for k, (think, image, box) in enumerate(answers):
        samples.append({"id": f"s{k}", "task": "multi_view", "images": ["a.png", "b.png"], "question": "q",
                        "target_image": 2, "target_box": TARGET, "objects": objects})  # fmt: skip
        raw = f"<think>{think}</think>\n<answer>{json.dumps({'image': image, 'bbox_2d': box})}</answer>"
        preds.append({"id": f"s{k}", "raw_output": raw, "pred_image": image,
                      "pred_box": None if box is None else [v / 100 for v in box]})  # fmt: skip
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    return ev, tmp_path / "samples.jsonl"


def test_outcomes_and_naming(tmp_path):
    ev, samples = _write(tmp_path, [
        ("Seen again -> Image-2.\nTarget: the large green cross at the top left.", 2, [10, 10, 40, 40]),  # hit
        ("Seen again -> Image-2.\nTarget: the small blue ring at the bottom right.", 2, [60, 60, 90, 90]),
        ("Seen again -> Image-1.\nTarget: the large red star at the top.", 1, [50, 10, 80, 40]),
        ("Seen again -> Image-2.\nTarget: the medium green square at the left.", 2, [10, 10, 20, 20]),
    ])  # fmt: skip
    count, ious = outcomes(ev, samples)
    assert (count["hit"], count["other object"], count["wrong image"], count["off"]) == (1, 1, 1, 1)
    assert len(ious) == 3
    names, read = naming(ev, samples)
    assert read == 4 and (names["target"], names["another"], names["none"]) == (1, 1, 2)
    assert (names["target hit"], names["another boxed"], names["none hit"]) == (1, 1, 0)
    # target words: large (answers 1, 3), green (1, 4), cross (1)
    assert (names["size word"], names["colour word"], names["shape word"]) == (2, 2, 1)


def test_describe_rows_name_an_annotated_object_at_its_pixel_box(tmp_path):
    from lab.rl_study.describe_rows import add_rows

    run = tmp_path / "run"
    (run / "data" / "train").mkdir(parents=True)
    (run / "traj").mkdir()
    objects = [[_obj("cross", "green", "large", [0.5, 0.1, 0.75, 0.4])], []]
    sample = {"id": "s0", "task": "diff", "images": ["a.png", "b.png"], "question": "q", "target_image": 1,
              "target_box": [0.5, 0.1, 0.75, 0.4], "objects": objects}  # fmt: skip
    (run / "data" / "train" / "samples.jsonl").write_text(json.dumps(sample) + "\n")
    user = [{"type": "text", "text": "Image-1: "}, {"type": "image"}, {"type": "text", "text": "\nImage-2: "},
            {"type": "image"}, {"type": "text", "text": "\nq\nFormat..."}]  # fmt: skip
    record = {"id": "s0", "task": "diff", "source": "mig-synth", "images": ["a.png", "b.png"],
              "dialect": "qwen2_5_vl", "resized_sizes": [[224, 112], [224, 112]], "mode": "template",
              "messages": [{"role": "user", "content": user},
                           {"role": "assistant", "content": [{"type": "text", "text": "<think>..."}]}]}  # fmt: skip
    traj = run / "traj" / "trajectories.jsonl"
    traj.write_text(json.dumps(record) + "\n")
    assert add_rows(run) == 1 and add_rows(run) == 0  # a second call adds nothing
    rows = [json.loads(line) for line in traj.read_text().splitlines()]
    assert rows[0] == record and len(rows) == 2
    row = rows[1]
    assert row["messages"][0]["content"][:4] == user[:4]  # the same images, labelled the same way
    assert (
        row["messages"][0]["content"][4]["text"] == "\nWhat is the object at [112, 11, 168, 45] in Image-1?"
    )
    assert row["messages"][1]["content"][0]["text"] == "It is the large green cross."


def test_image_only_drops_the_object_line_and_keeps_the_answer():
    from lab.rl_study.image_only import image_only

    answer = '\n<answer>{"image": 2, "bbox_2d": [1, 2, 3, 4]}</answer>'
    text = "<think>The right object is only in one image -> Image-2.\nIn Image-2: the red star at the top.</think>"
    assert (
        image_only(text + answer)
        == "<think>The right object is only in one image -> Image-2.</think>" + answer
    )
    single = "<think>Seen again -> Image-2.</think>" + answer
    assert image_only(single) == single  # no object line: unchanged
