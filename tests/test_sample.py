import json

import pytest

from mirg.errors import DataError
from mirg.sample import ObjectAnn, RefBox, Sample, load_dataset, read_samples, write_samples


def make_sample(**kw):
    d = dict(
        id="s1",
        task="diff",
        images=["a.png", "b.png"],
        question="Where is the difference in Image-2?",
        target_image=2,
        target_box=(0.1, 0.2, 0.3, 0.4),
        ref_boxes=[RefBox(1, (0.0, 0.0, 0.5, 0.5))],
        objects=[[ObjectAnn("circle", (0.1, 0.1, 0.2, 0.2), {"colour": "red"})], []],
        relations=[{"text": "Image-2 is Image-1 with one object added", "type": "difference"}],
        source="unit",
        meta={"k": 1},
    )
    d.update(kw)
    return Sample(**d)


def write_lines(tmp_path, lines):
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_roundtrip(tmp_path):
    s = make_sample()
    p = tmp_path / "x.jsonl"
    write_samples([s, make_sample(id="s2", target_image=None, target_box=None)], p)
    back = read_samples(p)
    assert back[0] == s
    assert back[1].target_image is None and back[1].target_box is None
    # byte-stable: writing what was read gives the same bytes
    p2 = tmp_path / "y.jsonl"
    write_samples(back, p2)
    assert p.read_bytes() == p2.read_bytes()


def test_loadable_with_datasets(tmp_path):
    p = tmp_path / "x.jsonl"
    write_samples([make_sample(), make_sample(id="s2")], p)
    ds = load_dataset(p)
    assert len(ds) == 2 and ds[0]["target_image"] == 2 and ds[1]["id"] == "s2"


GOOD = make_sample().to_dict()


@pytest.mark.parametrize(
    "mutate, line_field, why",
    [
        (lambda d: d.pop("question"), None, "missing required field(s): question"),
        (lambda d: d.update(target_box=[0.1, 0.2, 1.3, 0.4]), "target_box", "outside [0, 1]"),
        (lambda d: d.update(target_box=[0.5, 0.2, 0.3, 0.4]), "target_box", "empty or inverted"),
        (lambda d: d.update(target_box=[0.1, 0.2, 0.3]), "target_box", "4 numbers"),
        (lambda d: d.update(target_image=3), "target_image", "out of range 1..2"),
        (lambda d: d.update(target_image=0), "target_image", "out of range 1..2"),
        (lambda d: d.update(images=[]), "images", "non-empty list"),
        (lambda d: d.update(objects=[[]]), "objects", "1 per-image lists but the sample has 2 images"),
        (lambda d: d["objects"][0][0].update(box=[0.3, 0.1, 0.2, 0.2]), "objects[0][0].box", "inverted"),
        (
            lambda d: d.update(ref_boxes=[{"image": 5, "box": [0, 0, 1, 1]}]),
            "ref_boxes[0].image",
            "out of range",
        ),
        (lambda d: d.update(relations=[{"no_text": 1}]), "relations[0]", "string 'text'"),
    ],
)
def test_validation_names_file_line_field(tmp_path, mutate, line_field, why):
    bad = json.loads(json.dumps(GOOD))
    bad["id"] = "s2"
    mutate(bad)
    p = write_lines(tmp_path, [json.dumps(GOOD), "", json.dumps(bad)])
    with pytest.raises(DataError) as e:
        read_samples(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:3: ")
    if line_field:
        assert f"field '{line_field}'" in msg
    assert why in msg


def test_bad_json_and_duplicates(tmp_path):
    p = write_lines(tmp_path, [json.dumps(GOOD), '{"id": "x", '])
    with pytest.raises(DataError, match=r"data.jsonl:2: invalid JSON"):
        read_samples(p)
    p = write_lines(tmp_path, [json.dumps(GOOD), json.dumps(GOOD)])
    with pytest.raises(DataError, match=r"data.jsonl:2: field 'id': duplicate id 's1' \(first on line 1\)"):
        read_samples(p)
    with pytest.raises(DataError, match="file not found"):
        read_samples(tmp_path / "nope.jsonl")
