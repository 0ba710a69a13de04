"""``mirg compare`` and the eval-folder loader it shares with ``mirg report`` (:mod:`mirg.runs`): paired counts,
exact McNemar p and Wilson intervals per task and overall, on Acc@0.5 and image accuracy; refusing runs on
different data; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirg.errors import MirgError


def make_data(folder: Path, n: int = 8, images: bool = False) -> Path:
    """``n`` two-image samples over two tasks (target Image-2, box in the top-left quarter) at folder/samples.jsonl;
    with ``images`` their PNGs too."""
    from mirg.sample import Sample, write_samples

    folder.mkdir(parents=True, exist_ok=True)
    samples = [Sample(id=f"s{k}", task=("diff", "reasoning")[k % 2], images=["a.png", "b.png"],
                      question=f"Which image shows thing {k}?", target_image=2, target_box=(0.1, 0.1, 0.5, 0.5))
               for k in range(n)]  # fmt: skip
    if images:
        from PIL import Image

        for name, colour in (("a.png", (200, 30, 30)), ("b.png", (30, 30, 200))):
            Image.new("RGB", (64, 48), colour).save(folder / name)
    write_samples(samples, folder / "samples.jsonl")
    return folder / "samples.jsonl"


RIGHT, WRONG_BOX = [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]


def make_run(folder: Path, data: Path | None, answers: dict[str, tuple]) -> Path:
    """An eval folder: predictions.jsonl from ``{id: (image, box)}`` and (with ``data``) a metrics.json naming it."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": i, "task": "t", "raw_output": f"<think>I pick Image-{img}.</think><answer>..</answer>",
                         "pred_image": img, "pred_box": box, "parse_error": None if img else "no box found"})
             for i, (img, box) in answers.items()]  # fmt: skip
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if data is not None:
        (folder / "metrics.json").write_text(
            json.dumps({"run": {"model": f"/m/{folder.name}", "data": str(data)}})
        )
    return folder


@pytest.fixture
def two_runs(tmp_path):
    data = make_data(tmp_path / "data")
    # a: s0-s3 right; s4, s5 right image wrong box; s6 wrong image; s7 no answer
    a = {f"s{k}": (2, RIGHT) for k in range(4)} | {"s4": (2, WRONG_BOX), "s5": (2, WRONG_BOX), "s6": (1, RIGHT),
                                                   "s7": (None, None)}  # fmt: skip
    # b: s0, s1 right; s2, s3 wrong image; s4-s7 right
    b = {"s0": (2, RIGHT), "s1": (2, RIGHT), "s2": (1, RIGHT), "s3": (1, RIGHT)} | {
        f"s{k}": (2, RIGHT) for k in range(4, 8)
    }
    return make_run(tmp_path / "runA", data, a), make_run(tmp_path / "runB", data, b), data


def test_paired_counts_p_and_intervals_per_task_and_overall(two_runs):
    from mirg.compare import compare_runs
    from mirg.runs import load_runs

    result = compare_runs(load_runs(list(two_runs[:2])))
    assert result["shared"] == 8 and [r["label"] for r in result["runs"]] == ["runA", "runB"]
    assert result["runs"][0]["named_images"] == {"1": 1, "2": 6, "none": 1}
    (pair,) = result["pairs"]
    acc = pair["acc"]["all"]
    assert (acc["n"], acc["hits_a"], acc["hits_b"], acc["only_a"], acc["only_b"]) == (8, 4, 6, 2, 4)
    assert acc["p"] == pytest.approx(0.6875) and acc["ci_a"][0] == pytest.approx(0.2152, abs=1e-4)
    diff = pair["acc"]["tasks"]["diff"]  # s0, s2, s4, s6
    assert (diff["n"], diff["hits_a"], diff["hits_b"], diff["only_a"], diff["only_b"]) == (4, 2, 3, 1, 2)
    image = pair["image"]["all"]  # a names Image-2 for s0-s5; b for all but s2, s3
    assert (image["hits_a"], image["hits_b"], image["only_a"], image["only_b"]) == (6, 6, 2, 2)


def test_cli_prints_markdown_and_writes_json(two_runs, tmp_path, capsys):
    from mirg.cli import main

    out = tmp_path / "cmp" / "c.json"
    assert main(["compare", str(two_runs[0]), str(two_runs[1]), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "## runA vs runB: Acc@0.5" in text and "## runA vs runB: image accuracy" in text
    assert "| **all** | 8 | 4/8 (21.5-78.5) | 6/8 (40.9-92.9) | 2 | 4 | 0.69 |" in text
    assert json.loads(out.read_text())["pairs"][0]["acc"]["all"]["p"] == pytest.approx(0.6875)


def test_only_shared_samples_count_and_unknown_target_images_leave_image_accuracy(tmp_path):
    from mirg.compare import compare_runs
    from mirg.runs import load_runs
    from mirg.sample import read_samples, write_samples

    data = make_data(tmp_path / "data", n=4)
    samples = read_samples(data)
    samples[3].target_image = None  # e.g. MIG-Bench's original diff task
    write_samples(samples, data)
    a = make_run(tmp_path / "a", data, {f"s{k}": (2, RIGHT) for k in range(4)})
    b = make_run(tmp_path / "b", data, {f"s{k}": (1, RIGHT) for k in range(3)})  # s3 not answered
    result = compare_runs(load_runs([a, b]))
    assert result["shared"] == 3 and [r["left_out"] for r in result["runs"]] == [1, 0]
    assert result["pairs"][0]["image"]["all"]["n"] == 3
    run_a = load_runs([a])[0]
    assert run_a.hits("acc")["s3"] and "s3" not in run_a.hits(
        "image"
    )  # the box alone counts without a target


def test_runs_on_different_data_are_refused_naming_the_sample(two_runs, tmp_path, capsys):
    from mirg.cli import main
    from mirg.sample import read_samples, write_samples

    samples = read_samples(two_runs[2])
    samples[5].question = "Something else?"
    other = tmp_path / "other" / "samples.jsonl"
    other.parent.mkdir()
    write_samples(samples, other)
    c = make_run(tmp_path / "runC", other, {"s5": (2, RIGHT)})
    assert main(["compare", str(two_runs[0]), str(c)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not on the same data: sample 's5' has another question" in err


@pytest.mark.parametrize("case, message", [
    ("missing", "run folder not found"),
    ("empty", "no predictions"),
    ("demo", "a mirg demo folder? pass its eval/<stage> folders"),
    ("no-data", "cannot find the data it was evaluated on"),
    ("one", "at least two runs"),
])  # fmt: skip
def test_errors_are_one_line(two_runs, tmp_path, capsys, case, message):
    from mirg.cli import main

    folder = tmp_path / case
    if case == "empty":
        make_run(folder, two_runs[2], {})
    elif case == "demo":
        (folder / "eval" / "sft").mkdir(parents=True)
    elif case == "no-data":
        make_run(folder, None, {"s0": (2, RIGHT)})
    args = [str(two_runs[0])] if case == "one" else [str(folder), str(two_runs[1])]
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirg: error: ") and message in err and err.count("\n") == 1


def test_demo_stage_folders_find_their_data_and_get_distinct_labels(tmp_path, capsys):
    from mirg.cli import main
    from mirg.runs import load_runs

    for demo in ("a", "b"):
        data = make_data(tmp_path / demo / "data" / "test", n=4)
        make_run(tmp_path / demo / "eval" / "sft", None, {f"s{k}": (2, RIGHT) for k in range(4)})
        assert data.is_file()
    runs = load_runs([tmp_path / "a" / "eval" / "sft", tmp_path / "b" / "eval" / "sft"])
    assert [r.label for r in runs] == ["a/eval/sft", "b/eval/sft"]
    assert main(["compare", str(tmp_path / "a" / "eval" / "sft"), str(tmp_path / "a" / "eval" / "sft")]) == 0
    assert "| **all** | 4 | 4/4 (51.0-100.0) | 4/4 (51.0-100.0) | 0 | 0 | 1 |" in capsys.readouterr().out


def test_run_scores_match_what_eval_writes(two_runs):
    """One scorer: the loader's metrics are mirg.scoring's, as ``mirg eval`` computes them for metrics.json."""
    from mirg.answers import get_dialect
    from mirg.evaluation.runner import score_predictions
    from mirg.runs import load_run
    from mirg.sample import read_samples

    run = load_run(two_runs[0])
    records = {
        json.loads(x)["id"]: json.loads(x)
        for x in (two_runs[0] / "predictions.jsonl").read_text().splitlines()
    }
    expected = score_predictions(read_samples(two_runs[2]), records, get_dialect("qwen2_5_vl"))
    assert run.metrics()["tasks"] == expected["tasks"] and run.metrics()["average"] == expected["average"]
    with pytest.raises(ValueError, match="measure"):
        run.hits("iou")
    with pytest.raises(MirgError, match="--data: file not found"):
        load_run(two_runs[0], data=two_runs[0] / "nope.jsonl")


def test_paired_lines_name_each_later_run_against_each_earlier_one():
    from mirg.compare import paired_lines

    ids = [f"s{i}" for i in range(40)]
    hits = {"base": {i: k < 2 for k, i in enumerate(ids)}, "SFT": {i: 1 <= k < 13 for k, i in enumerate(ids)}}
    (line,) = paired_lines(hits)
    assert line == (
        "SFT vs base on the same 40 samples: right only for SFT 11, only for base 1; exact McNemar p = 0.0063"
    )
