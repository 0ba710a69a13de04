"""mirg trajectories: template mode on held-out MIG-Synth data, verification, resume, MGrounding loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirg.answers import Answer, check_format, get_dialect
from mirg.boxes import iou
from mirg.errors import MirgError
from mirg.prompting import build_messages
from mirg.sample import Sample, read_samples
from mirg.trajectories.describe import attribute, get_object, target_object
from mirg.trajectories.records import RECORD_KEYS, Resizer, completion_of, make_record, relative_images
from mirg.trajectories.runner import compute_stats, run_template
from mirg.trajectories.store import TrajectoryStore
from mirg.trajectories.teacher_prompt import hint_block, quoted_window, teacher_messages
from mirg.trajectories.template import TemplateError, template_reasoning
from mirg.trajectories.verify import extract_reasoning, verify_completion

HELD_OUT_SEED = 9101  # not a seed the training data uses


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    from mirg.synth import generate_dataset

    out = tmp_path_factory.mktemp("synth-held-out")
    generate_dataset(out, n_per_task=3, seed=HELD_OUT_SEED, progress=False)
    return out


@pytest.fixture(scope="module")
def synth_samples(synth_dir) -> list[Sample]:
    return read_samples(synth_dir / "samples.jsonl")


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _template(samples, root, out, dialect="qwen2_5_vl", seed=0, per_sample=1):
    with TrajectoryStore(out) as store:
        rep = run_template(samples, root, store, get_dialect(dialect), Resizer(), seed, per_sample)
        stats = compute_stats(samples, store, "template")
    return rep, stats


# --- template mode -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["qwen2_5_vl", "qwen2_vl"])
def test_template_trajectories_all_verify(synth_dir, synth_samples, tmp_path, dialect):
    out = tmp_path / "out"
    rep, stats = _template(synth_samples, synth_dir, out, dialect)
    assert rep.kept == len(synth_samples) and rep.dropped == 0
    assert stats["kept_samples"] == stats["samples"] == len(synth_samples)
    d = get_dialect(dialect)
    by_id = {s.id: s for s in synth_samples}
    records = _lines(out / "trajectories.jsonl")
    assert len(records) == len(synth_samples)
    for rec in records:
        s = by_id[rec["id"]]
        text = completion_of(rec)
        assert check_format(text) == ""
        ans = d.parse(text)
        assert isinstance(ans, Answer) and ans.image == s.target_image
        wh = tuple(rec["resized_sizes"][s.target_image - 1])
        assert iou(d.to_normalized(ans.box, wh if d.coords == "pixels" else None), s.target_box) > 0.9
        assert verify_completion(s, text, d, [tuple(x) for x in rec["resized_sizes"]]).ok


def test_template_reasoning_uses_the_annotations(synth_dir, synth_samples):
    d = get_dialect("qwen2_5_vl")
    resizer = Resizer()
    for s in synth_samples:
        sizes = resizer.sizes(s, synth_dir)
        text = template_reasoning(s, d, sizes[s.target_image - 1], seed=3)
        assert f"Image-{s.target_image}" in text, s.id
        tgt = target_object(s)
        if tgt is not None:  # the target object, by colour and shape
            _, o = tgt
            assert f"{o.attributes['color']} {o.category}" in text, s.id
        # every image's object list (step 2)
        for k, per in enumerate(s.objects, start=1):
            assert f"Image-{k}" in text
            for o in per[:8]:
                assert f"{o.attributes['color']} {o.category}" in text
        # the image-level annotation that decides the target (step 3)
        for r in s.relations:
            kind = r["type"]
            if kind == "difference":
                if r["change"] == "color":
                    a, b = get_object(s, r["subject"]), get_object(s, r["object"])
                    assert a.attributes["color"] in text and b.attributes["color"] in text
                elif r["change"] in ("added", "removed"):
                    assert "no counterpart" in text or "lacks" in text
            elif kind == "common_object":
                assert f"{len(s.images)}" in text and ("every image" in text or "all" in text)
            elif kind in ("same_attribute", "correspondence"):
                word = {"color": "colour", "shape": "shape"}[r["attribute"]]
                assert word in text and str(r["value"]) in text, s.id
                ref = get_object(s, r["object"])
                assert attribute(ref, r["attribute"]) == r["value"]
            elif kind == "spatial":
                words = {"above": "above", "below": "below", "left": "left of", "right": "right of"}
                assert words[r["relation"]] in text, s.id
            elif kind == "crop_of" and r["box"] == pytest.approx(list(s.target_box)):
                assert f"Image-{r['images'][0]}" in text
            elif kind == "perturbation":
                dx, dy = r["shift_px"]
                assert f"({dx}, {dy})" in text
            elif kind == "described_by":
                o = get_object(s, r["subject"])
                assert all(str(attribute(o, a)) in text for a in r["attributes"])
        # and the final box, in the dialect's coordinates
        box = d.from_normalized(s.target_box, sizes[s.target_image - 1])
        assert "[" + ", ".join(str(v) for v in box) + "]" in text


def test_template_is_deterministic_and_varied(synth_samples):
    d = get_dialect("qwen2_vl")
    a = [template_reasoning(s, d, None, seed=1) for s in synth_samples]
    b = [template_reasoning(s, d, None, seed=1) for s in synth_samples]
    c = [template_reasoning(s, d, None, seed=2) for s in synth_samples]
    assert a == b
    assert sum(x != y for x, y in zip(a, c, strict=True)) > len(a) // 2
    # several phrasings per step: first sentences across the set are not all alike
    firsts = {t.split("\n")[0].split(" ")[0:3].__str__() for t in a}
    assert len(firsts) > 5


def test_record_format(synth_dir, synth_samples, tmp_path):
    out = tmp_path / "o"
    _template(synth_samples[:4], synth_dir, out, per_sample=2)
    records = _lines(out / "trajectories.jsonl")
    assert len(records) == 8
    by_id = {s.id: s for s in synth_samples}
    for rec in records:
        assert tuple(rec) == RECORD_KEYS
        s = by_id[rec["id"]]
        assert rec["messages"] == build_messages(s, "qwen2_5_vl", completion=completion_of(rec))
        assert rec["mode"] == "template" and rec["teacher_key"] is None and rec["dialect"] == "qwen2_5_vl"
        assert rec["target_box"] == list(s.target_box) and rec["target_image"] == s.target_image
        assert all((out / p).is_file() for p in rec["images"])
        assert rec["resized_sizes"] == [[140, 140]] * len(s.images)  # 128 px -> 140 with the tiny processor
    texts = [completion_of(r) for r in records]
    assert len(set(texts)) == 8  # the two trajectories of a sample differ


def test_template_bytes_stable(synth_dir, synth_samples, tmp_path):
    _template(synth_samples, synth_dir, tmp_path / "a", seed=5)
    _template(synth_samples, synth_dir, tmp_path / "b", seed=5)
    assert (tmp_path / "a/trajectories.jsonl").read_bytes() == (
        tmp_path / "b/trajectories.jsonl"
    ).read_bytes()


def test_template_drops_unannotated_and_untargeted(synth_dir, tmp_path):
    img = "images/diff/" + sorted(p.name for p in (synth_dir / "images/diff").iterdir())[0]
    bare = Sample("bare", "t", [img], "Where?", 1, (0.1, 0.1, 0.5, 0.5))
    untargeted = Sample("nt", "t", [img], "Where?", relations=[{"text": "x"}])
    with pytest.raises(TemplateError):
        template_reasoning(bare, get_dialect("qwen2_vl"), None)
    rep, stats = _template([bare, untargeted], synth_dir, tmp_path / "o")
    assert rep.dropped == 2 and stats["drop_reasons"] == {"no_annotations": 1, "no_target": 1}
    assert {r["reason"] for r in _lines(tmp_path / "o/dropped.jsonl")} == {"no_annotations", "no_target"}


def test_template_resume_and_torn_line(synth_dir, synth_samples, tmp_path):
    out = tmp_path / "o"
    _template(synth_samples[:6], synth_dir, out)
    full = (out / "trajectories.jsonl").read_bytes()
    # a killed run: the last record is half written
    lines = full.splitlines(keepends=True)
    (out / "trajectories.jsonl").write_bytes(b"".join(lines[:4]) + lines[4][:50])
    rep, _stats = _template(synth_samples[:6], synth_dir, out)
    assert rep.skipped_done == 4 and rep.kept == 2
    assert (out / "trajectories.jsonl").read_bytes() == full
    rep, _ = _template(synth_samples[:6], synth_dir, out)
    assert rep.kept == 0 and rep.skipped_done == 6
    with pytest.raises(MirgError, match="other settings"):
        _template(synth_samples[:6], synth_dir, out, seed=99)


# --- verification and hints ----------------------------------------------------------------------------


def _simple_sample(tmp_path: Path) -> Sample:
    from PIL import Image

    for k in (1, 2):
        Image.new("RGB", (200, 100)).save(tmp_path / f"{k}.png")
    return Sample(
        "v",
        "t",
        ["1.png", "2.png"],
        "Where is the red star?",
        2,
        (0.2, 0.2, 0.6, 0.8),
        relations=[
            {"type": "x", "text": "The red star in Image-2 is the only star that appears in both images."}
        ],
    )


def test_verify_reasons(tmp_path):
    s = _simple_sample(tmp_path)
    d = get_dialect("qwen2_5_vl")
    sizes = Resizer().sizes(s, tmp_path)
    assert sizes == [(196, 112), (196, 112)]
    hints = hint_block(s, d, sizes)
    good = "I compare the two images and the red star is clearly in the second one."
    gt = d.from_normalized(s.target_box, sizes[1])

    def ans(image, box):
        return d.render_answer(image, box)

    cases = {
        "": f"<think>{good}</think><answer>{ans(2, gt)}</answer>".replace("<answer><answer>", "<answer>"),
        "no_answer": f"<think>{good}</think> the answer is image 2",
        "wrong_image": f"<think>{good}</think>{ans(1, gt)}",
        "low_iou": f"<think>{good}</think>{ans(2, (0, 0, 20, 20))}",
        "invalid_box": f"<think>{good}</think>{ans(2, (0, 0, 500, 20))}",
        "empty_reasoning": f"<think>yes</think>{ans(2, gt)}",
        "quotes_hints": f"<think>Well: the red star in image 2 is the only star that appears in both images, "
        f"so.</think>{ans(2, gt)}",
    }
    for code, text in cases.items():
        text = text.replace("<answer><answer>", "<answer>").replace("</answer></answer>", "</answer>")
        v = verify_completion(s, text, d, sizes, hints=hints)
        assert v.code == code, (code, v)
    # without <think>: the reasoning is what precedes <answer>
    assert extract_reasoning(f"{good}\n{ans(2, gt)}") == good


def test_quoted_window_is_twelve_words():
    hint = "one two three four five six seven eight nine ten eleven twelve thirteen"
    assert quoted_window("x One, two three four five six seven eight nine ten eleven twelve!", hint)
    assert quoted_window("one two three four five six seven eight nine ten eleven", hint) is None
    assert quoted_window("anything", "too short") is None


def test_teacher_messages_hold_images_hints_and_format(tmp_path):
    s = _simple_sample(tmp_path)
    d = get_dialect("qwen2_5_vl")
    sizes = Resizer().sizes(s, tmp_path)
    msgs = teacher_messages(s, d, sizes)
    assert [m["role"] for m in msgs] == ["system", "user"]
    parts = msgs[1]["content"]
    assert sum(p["type"] == "image" for p in parts) == 2
    text = parts[-1]["text"]
    assert "Where is the red star?" in text and "<hints>" in text and "bbox_2d" in text
    assert "196x112" in text and "Correct answer: Image-2" in text
    assert "Correct answer" not in hint_block(s, d, sizes, with_answer=False)


def test_relative_images_and_make_record(tmp_path):
    s = _simple_sample(tmp_path)
    (tmp_path / "out").mkdir()
    assert relative_images(s, tmp_path, tmp_path / "out") == ["../1.png", "../2.png"]
    rec = make_record(s, get_dialect("qwen2_vl"), "because", ["a", "b"], [(10, 10), (10, 10)], "teacher", "k")
    assert completion_of(rec).startswith("<think>because</think>") and rec["teacher_key"] == "k"
    with pytest.raises(ValueError):
        make_record(s, get_dialect("qwen2_vl"), "x <answer>", ["a", "b"], [(1, 1)] * 2, "teacher", "k")


# --- MGrounding-630k ------------------------------------------------------------------------------------


def test_mgrounding_loader(tmp_path):
    from mirg.trajectories.mgrounding import is_mgrounding, load_mgrounding

    recs = [
        {
            "id": "a_b_c",
            "images": ["./MG/x1.jpg", "./MG/x2.jpg", "./MG/x3.jpg"],
            "conversations": [
                {"from": "human", "value": "<image>\n<image>\n<image>\nGive the box of: a statue."},
                {
                    "from": "gpt",
                    "value": "It's in the third image. <|box_start|>(316,58),(764,999)<|box_end|>",
                },
                {"from": "human", "value": "Now the woman in orange."},
                {
                    "from": "gpt",
                    "value": "It's in the first image. <|box_start|>(408,656),(578,997)<|box_end|>",
                },
                {"from": "human", "value": "And this?"},
                {"from": "gpt", "value": "<|box_start|>(1,2),(3,4)<|box_end|>"},
            ],
            "type": "gg_train",
        },
        {
            "id": "a_b_c",
            "images": ["./MG/y.jpg"],
            "conversations": [
                {"from": "human", "value": "<image>\nWhere is it in Image-1?"},
                {"from": "gpt", "value": "<|box_start|>(100,100),(500,500)<|box_end|>"},
            ],
            "type": "ot_train",
        },
    ]
    path = tmp_path / "MGrounding-630k.json"
    path.write_text(json.dumps(recs, indent=1), encoding="utf-8")
    assert is_mgrounding(path)
    samples, skipped = load_mgrounding(path)
    assert [s.id for s in samples] == ["a_b_c", "a_b_c#t2", "a_b_c#2"]
    s0, s1, s2 = samples
    assert s0.question == "Give the box of: a statue." and s0.target_image == 3 and s0.task == "gg_train"
    assert s0.target_box == pytest.approx((0.316, 0.058, 0.764, 0.999))
    assert s1.target_image == 1 and s1.images == s0.images and s2.target_image == 1
    assert s0.source == "mgrounding-630k"
    assert dict(skipped) == {"no target image named": 1}
    jsonl = tmp_path / "mg.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in recs) + "\n", encoding="utf-8")
    assert is_mgrounding(jsonl) and len(load_mgrounding(jsonl)[0]) == 3


# --- reasoning length and the Python API ---------------------------------------------------------------


def _reasonings(path: Path) -> dict[str, str]:
    return {r["id"]: extract_reasoning(completion_of(r)) for r in _lines(path)}


def test_reasoning_lengths_are_the_last_step_lines(synth_dir, tmp_path):
    """short = the last two step lines of the full reasoning (cross-image step, localisation); brief = the last
    (localisation); the records are otherwise the same, and the written stats count the cut text."""
    from mirg.trajectories import write_template_trajectories

    written, files = {}, {}
    for length in ("full", "short", "brief"):
        out = tmp_path / length
        written[length] = write_template_trajectories(
            synth_dir / "samples.jsonl", out, None, seed=3, reasoning=length
        )
        files[length] = out / "trajectories.jsonl"
    full, short, brief = (_reasonings(files[k]) for k in ("full", "short", "brief"))
    assert full.keys() == short.keys() == brief.keys() and len(full) == written["full"]["trajectories"] > 0
    for sid, text in full.items():
        lines = text.split("\n")
        assert len(lines) >= 4  # question, one line per image, cross-image step, localisation
        assert short[sid] == "\n".join(lines[-2:])
        assert brief[sid] == lines[-1]
        assert "[" in brief[sid] and "Image-" in brief[sid]  # the localisation names the image and the box
    # apart from the reasoning, the records are identical
    strip = [
        [{**r, "messages": r["messages"][:-1]} for r in _lines(files[k])] for k in ("full", "short", "brief")
    ]
    assert strip[0] == strip[1] == strip[2]
    for k, texts in (("full", full), ("short", short), ("brief", brief)):
        words = sum(len(t.split()) for t in texts.values()) / len(texts)
        assert written[k]["mean_reasoning_words"] == pytest.approx(words, abs=0.01)
        assert written[k]["reasoning"] == k
        assert json.loads((tmp_path / k / "stats.json").read_text())["reasoning"] == k
    assert written["full"]["mean_reasoning_words"] > written["short"]["mean_reasoning_words"]
    assert written["short"]["mean_reasoning_words"] > written["brief"]["mean_reasoning_words"]


def test_template_reasoning_length_option(synth_samples):
    d = get_dialect("qwen2_5_vl")
    for s in synth_samples[:10]:
        full = template_reasoning(s, d, (140, 140), seed=4, variant=1)
        assert template_reasoning(s, d, (140, 140), seed=4, variant=1, reasoning="full") == full
        lines = full.split("\n")
        assert template_reasoning(s, d, (140, 140), seed=4, variant=1, reasoning="short") == "\n".join(
            lines[-2:]
        )
        assert template_reasoning(s, d, (140, 140), seed=4, variant=1, reasoning="brief") == lines[-1]
    with pytest.raises(ValueError, match="reasoning must be one of"):
        template_reasoning(synth_samples[0], d, None, reasoning="long")


def test_cli_reasoning_option(synth_dir, tmp_path, capsys):
    from mirg.cli import main
    from mirg.trajectories import write_template_trajectories

    data = str(synth_dir / "samples.jsonl")
    args = [
        "trajectories",
        "--data",
        data,
        "--out",
        str(tmp_path / "cli"),
        "--mode",
        "template",
        "--no-progress",
    ]
    assert main([*args, "--reasoning", "brief", "--seed", "2", "--limit", "6"]) == 0
    api = write_template_trajectories(data, tmp_path / "api", seed=2, reasoning="brief", limit=6)
    assert (tmp_path / "cli/trajectories.jsonl").read_bytes() == (
        tmp_path / "api/trajectories.jsonl"
    ).read_bytes()
    assert f"mean reasoning {api['mean_reasoning_words']} words" in capsys.readouterr().out
    # another length into the same folder is refused, not mixed
    assert main([*args, "--reasoning", "short", "--seed", "2", "--limit", "6"]) == 2
    assert "reasoning" in capsys.readouterr().err
    teacher = ["trajectories", "--data", data, "--out", str(tmp_path / "t"), "--mode", "teacher"]
    assert main([*teacher, "--base-url", "http://127.0.0.1:9", "--reasoning", "brief"]) == 2
    assert "--reasoning applies to template mode" in capsys.readouterr().err
    with pytest.raises(MirgError, match="reasoning must be one of"):
        write_template_trajectories(data, tmp_path / "x", reasoning="long")


def test_relation_types_are_shared_with_synth(synth_samples):
    """Every relation type MIG-Synth writes is one of mirg.synth.relations' names, and the template narrates
    each deciding one by a narrator registered under that name."""
    from mirg.synth.relations import PERTURBATION, RELATION_TYPES, SAME_SCENE
    from mirg.trajectories.template import NARRATORS

    written = {r["type"] for s in synth_samples for r in s.relations}
    assert written <= set(RELATION_TYPES)
    assert set(NARRATORS) == set(RELATION_TYPES) - {PERTURBATION, SAME_SCENE}  # those two only qualify others
    assert {s.task for s in synth_samples if not any(r["type"] in NARRATORS for r in s.relations)} == set()


def test_trajectories_do_not_import_evaluation():
    """Data flows one way: trajectories never import evaluation code (shared generation: mirg.models)."""
    import mirg.trajectories

    root = Path(mirg.trajectories.__file__).parent
    offenders = [p.name for p in root.rglob("*.py") if "mirg.evaluation" in p.read_text(encoding="utf-8")]
    assert offenders == []


# --- CLI ------------------------------------------------------------------------------------------------


def test_cli_template(synth_dir, tmp_path, capsys):
    from mirg.cli import main

    out = tmp_path / "cli"
    args = [
        "trajectories",
        "--data",
        str(synth_dir / "samples.jsonl"),
        "--out",
        str(out),
        "--mode",
        "template",
    ]
    assert main([*args, "--limit", "5", "--dialect", "qwen2_vl", "--no-progress"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["kept_samples"] == 5 and stats["mode"] == "template" and stats["dialect"] == "qwen2_vl"
    assert stats["mean_reasoning_words"] > 20
    assert "5/5 samples kept" in capsys.readouterr().out
    assert main([*args, "--per-sample", "0"]) == 2
    assert "--per-sample" in capsys.readouterr().err
    assert (
        main(
            ["trajectories", "--data", str(tmp_path / "nope.jsonl"), "--out", str(out), "--mode", "template"]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err


def test_trajectory_folder_refuses_other_data_and_a_second_run(synth_dir, tmp_path):
    """Resume checks the data's content, not only sample ids; a folder in use by another run is refused."""
    from mirg.outputs import locked
    from mirg.trajectories import write_template_trajectories

    data = synth_dir / "samples.jsonl"
    out = tmp_path / "traj"
    first = write_template_trajectories(data, out, seed=0, limit=4)
    assert write_template_trajectories(data, out, seed=0, limit=4)["trajectories"] == first["trajectories"]
    other = synth_dir / "other.jsonl"  # the same ids, another question: not the same data
    rows = [json.loads(x) for x in data.read_text(encoding="utf-8").splitlines()]
    rows[0]["question"] += " Answer carefully."
    other.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(
        MirgError, match=r"data.*(--overwrite|another --out)|(--overwrite|another --out).*data"
    ):
        write_template_trajectories(other, out, seed=0, limit=4)
    assert write_template_trajectories(other, out, seed=0, limit=4, overwrite=True)["trajectories"] >= 1
    with locked(out), pytest.raises(MirgError, match="in use by another mirg run"):
        write_template_trajectories(other, out, seed=0, limit=4)
    other.unlink()


def test_compact_reasoning_decides_the_image_then_the_object(synth_dir, synth_samples, tmp_path):
    """compact: two sentences of its own (not a cut of the template): the deciding relation ending on the target
    image, then the object; the last image it names is always the answer's; every trajectory verifies; shorter
    than brief (and within about 40-70 tokens of the shipped base's 650-token tokenizer)."""
    import re

    from mirg.trajectories import write_template_trajectories

    d = get_dialect("qwen2_5_vl")
    for s in synth_samples:
        text = template_reasoning(s, d, (140, 140), seed=4, reasoning="compact")
        first, second = text.split("\n")
        assert first.endswith(f"-> Image-{s.target_image}.")
        assert int(re.findall(r"Image-(\d+)", text)[-1]) == s.target_image
        assert "[" not in text  # no box numbers: the answer carries them
        brief = template_reasoning(s, d, (140, 140), seed=4, reasoning="brief")
        assert second not in brief.split("\n") and len(text) < len(brief)
        assert template_reasoning(s, d, (140, 140), seed=4, reasoning="compact") == text  # deterministic
    texts = {
        template_reasoning(s, d, None, seed=k, reasoning="compact")
        for s in synth_samples[:6]
        for k in range(6)
    }
    assert len(texts) > 6  # several phrasings
    written = write_template_trajectories(synth_dir / "samples.jsonl", tmp_path / "c", None, seed=3,
                                          reasoning="compact")  # fmt: skip
    assert written["kept_samples"] == len(synth_samples) and written["reasoning"] == "compact"
    assert written["mean_reasoning_words"] < 20
    from mirg.demo.settings import SHIPPED_BASE

    if (SHIPPED_BASE / "tokenizer_config.json").is_file():
        from mirg.models.loading import load_processor

        tok = load_processor(SHIPPED_BASE).tokenizer
        texts = _reasonings(tmp_path / "c" / "trajectories.jsonl").values()
        counts = [len(tok(t)["input_ids"]) for t in texts]
        assert 30 <= sum(counts) / len(counts) <= 60 and max(counts) <= 80


def test_trajectory_folder_refuses_other_images_not_another_cwd(synth_dir, tmp_path, monkeypatch):
    """Resume checks the images too (another --image-root with the same names is refused in one line), by their
    paths relative to the output folder: another working directory, or data and outputs moved together, resume."""
    import shutil

    from PIL import Image

    from mirg.trajectories import write_template_trajectories

    shutil.copytree(synth_dir, tmp_path / "d")
    for p in (tmp_path / "d").rglob("*.png"):  # the same names, twice the size
        big = tmp_path / "big" / p.relative_to(tmp_path / "d")
        big.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(p) as im:
            im.resize((im.width * 2, im.height * 2)).save(big)
    out = tmp_path / "traj"
    assert write_template_trajectories(tmp_path / "d" / "samples.jsonl", out, limit=4)["trajectories"] == 4
    with pytest.raises(MirgError, match=r"different images.*--overwrite") as e:
        write_template_trajectories(tmp_path / "d" / "samples.jsonl", out, image_root=tmp_path / "big")
    assert "\n" not in str(e.value)
    monkeypatch.chdir(tmp_path / "d")
    n = len(read_samples("samples.jsonl"))
    assert write_template_trajectories("samples.jsonl", "../traj", limit=6)["trajectories"] == 6
    monkeypatch.chdir(tmp_path)
    (tmp_path / "moved").mkdir()
    shutil.move(tmp_path / "d", tmp_path / "moved" / "d")
    shutil.move(out, tmp_path / "moved" / "traj")
    stats = write_template_trajectories(Path("moved/d/samples.jsonl"), Path("moved/traj"))
    records = _lines(tmp_path / "moved" / "traj" / "trajectories.jsonl")
    assert stats["trajectories"] == len(records) == n
    assert all(p.startswith("../d/images/") for r in records for p in r["images"])
