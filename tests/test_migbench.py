import json

import pytest

from migbench_paths import ORIGINAL, REVISED, needs_migbench
from mirg.errors import DataError
from mirg.migbench import (
    TASK_ORDER,
    TASKS,
    column_name,
    load_bench,
    ordered_tasks,
    target_image_of,
)


def test_registry_order_and_columns():
    assert len(TASKS) == 10
    assert [column_name(t) for t in TASK_ORDER] == [
        "Static", "Robust", "Common", "OT", "MV", "Region", "Refer", "GG", "Reason", "Co-Re",
    ]  # fmt: skip
    assert ordered_tasks({"zeta", "reasoning", "diff", "alpha"}) == ["diff", "reasoning", "alpha", "zeta"]
    assert column_name("cross_relation") == "cross_relation"


@pytest.mark.parametrize(
    "item, expected",
    [
        ({"task": "diff", "images": ["a", "b"], "question": "difference in the 2th image. "}, 2),
        ({"task": "diff", "images": ["a", "b"], "question": "give me the coordinates of their difference. "}, None),
        ({"task": "object_tracking", "images": list("abcdef"),
          "question": "For the object in the first image marked (...), please locate it in the 4th image. "}, 4),
        ({"task": "region", "images": list("abcd"), "question": "locate the 3th region picture in the source image"}, 1),
        ({"task": "reasoning", "images": ["a", "b"], "question": "people in image-1 ... Find it in Image-2."}, 2),
        ({"task": "group_grounding", "images": list("abc"), "question": "q",
          "additional_info": "It is in the third image. <|box_start|>(1,2),(3,4)<|box_end|>."}, 3),
        ({"task": "group_grounding", "images": list("abc"), "question": "q", "additional_info": ""}, None),
        ({"task": "common_object", "images": list("abc"), "question": "locate this object in the 7th image"}, None),
    ],
)  # fmt: skip
def test_target_image_rules(item, expected):
    assert target_image_of(item) == expected


def test_bad_bench_file_names_file_and_line(tmp_path):
    p = tmp_path / "bench.json"
    good = {"task": "diff", "images": ["a", "b"], "question": "q in the 1th image", "answer": [0, 0, 10, 10]}
    bad = {"task": "diff", "images": ["a", "b"], "question": "q"}
    text = json.dumps([good, bad], indent=1)
    p.write_text(text)
    line_of_bad = [i for i, ln in enumerate(text.splitlines(), 1) if ln == " {"][1]
    with pytest.raises(DataError, match=rf"bench.json:{line_of_bad}: missing field\(s\): answer"):
        load_bench(p)
    p.write_text('[{"task": "diff",\n "images": ["a"], "question": "q", "answer": [0,0,1,1]}\n,,]')
    with pytest.raises(DataError, match=r"bench.json:3: invalid JSON"):
        load_bench(p)


def test_small_bench_both_scales(tmp_path):
    item = {"task": "multi_view", "images": ["a", "b"], "answer": [100, 200, 300, 400], "additional_info": "",
            "question": "object marked in the first image(<|box_start|>(1,2),(30,40)<|box_end|>). locate it in the 2th image."}  # fmt: skip
    p = tmp_path / "b.json"
    p.write_text(json.dumps([item, item]))
    s = load_bench(p)
    assert s[0].target_box == (0.1, 0.2, 0.3, 0.4) and s[0].target_image == 2
    assert s[0].ref_boxes[0].image == 1 and s[0].ref_boxes[0].box == (0.001, 0.002, 0.03, 0.04)
    assert s[1].id == s[0].id + "-2"
    item["answer"] = [0.1, 0.2, 0.3, 0.4]
    p.write_text(json.dumps([item]))
    assert load_bench(p)[0].target_box == (0.1, 0.2, 0.3, 0.4) and load_bench(p)[0].source.endswith(
        "original"
    )


@needs_migbench
def test_real_releases():
    rev, orig = load_bench(REVISED), load_bench(ORIGINAL)
    assert (len(rev), len(orig)) == (4276, 4295)
    assert len({s.id for s in rev}) == len(rev) and len({s.id for s in orig}) == len(orig)
    assert set(s.task for s in rev) == set(TASK_ORDER)
    # every revised item has a known target image; the original release's diff questions name none
    assert all(s.target_image is not None for s in rev)
    assert {s.task for s in orig if s.target_image is None} == {"diff"}
    assert all(1 <= s.target_image <= s.num_images for s in rev)
    assert all(0 <= v <= 1 for s in rev for v in s.target_box)
    assert sum(not s.meta["gt_box_valid"] for s in orig) == 7
    # ids are stable across loads and shared by items the revision left unchanged
    assert [s.id for s in load_bench(REVISED)] == [s.id for s in rev]
    assert len({s.id for s in rev} & {s.id for s in orig}) > 3000
    gg = [s for s in rev if s.task == "group_grounding"]
    assert {s.target_image for s in gg} >= {1, 2, 3}
