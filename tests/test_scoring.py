import json
from collections import Counter

import pytest

from migbench_paths import RESULTS, REVISED, needs_migbench
from mirg.cli import main
from mirg.migbench import load_bench
from mirg.predictions import load_predictions
from mirg.sample import Sample
from mirg.scoring import Prediction, aggregate, format_markdown, format_table, score, score_items

MIGICIAN_ACC05 = {
    "diff": 70.08, "view_diff": 44.68, "common_object": 72.15, "object_tracking": 67.45, "multi_view": 58.68,
    "region": 72.32, "refer_grounding": 75.76, "group_grounding": 83.30, "reasoning": 52.58, "correspondence": 36.75,
}  # fmt: skip


@pytest.fixture(scope="module")
def revised():
    return load_bench(REVISED)


@needs_migbench
def test_official_reproduces_migician_run(revised):
    preds = load_predictions(RESULTS / "migician", revised)
    assert len(preds) == len(revised)
    items = score_items(revised, preds, "official", y_rescale="migician")
    by_id = {p.id: p for p in preds}
    worst = max(abs(it.iou - by_id[it.id].extra["iou"]) for it in items)
    assert worst < 1e-6
    m = aggregate(items, "official")
    assert {t: v["acc@0.5"] for t, v in m["tasks"].items()} == MIGICIAN_ACC05
    assert m["average"]["acc@0.5"] == 63.38
    # without the rescale the same outputs score lower: the option really changes the computation
    assert score(revised, preds, "official")["average"]["acc@0.5"] < 63.38


@needs_migbench
def test_official_qwen2_vl_and_the_runs_float_misses(revised):
    preds = load_predictions(RESULTS / "qwen2_vl", revised)
    items = score_items(revised, preds, "official")
    assert aggregate(items, "official")["average"]["acc@0.5"] == 30.64
    by_id = {p.id: p for p in preds}
    differ = [it for it in items if abs(it.iou - by_id[it.id].extra["iou"]) > 1e-6]
    assert Counter(it.task for it in differ) == {"group_grounding": 44, "reasoning": 1}
    # every one is a float answer that run scored as a miss (its parsed box [0,0,0,0]), which we read
    for it in differ:
        p = by_id[it.id]
        assert p.extra["filter_answer"] == [0.0, 0.0, 0.0, 0.0] and p.extra["iou"] == 0.0
        assert "." in p.raw_output and it.iou > 0


def mk(i, task="t", target_image=2, box=(0.1, 0.1, 0.5, 0.5), n=3):
    return Sample(id=f"s{i}", task=task, images=[f"{k}.png" for k in range(n)], question="q",
                  target_image=target_image, target_box=box)  # fmt: skip


def test_mirg_protocol_gates_on_image():
    samples = [mk(0), mk(1), mk(2), mk(3, target_image=None)]
    preds = [
        Prediction("s0", "", image=2, box=(0.1, 0.1, 0.5, 0.5)),  # right image, perfect box
        Prediction("s1", "", image=1, box=(0.1, 0.1, 0.5, 0.5)),  # wrong image, perfect box
        Prediction("s2", "", parse_error="no answer"),  # garbage output
        Prediction("s3", "", image=1, box=(0.1, 0.1, 0.5, 0.5)),  # target image unknown: box alone
    ]
    items = score_items(samples, preds, "mirg")
    assert [it.iou for it in items] == [1.0, 0.0, 0.0, 1.0]
    assert [it.image_correct for it in items] == [True, False, False, None]
    m = aggregate(items, "mirg")["tasks"]["t"]
    assert m["acc@0.5"] == 50.0 and m["image_acc"] == pytest.approx(33.33) and m["image_unknown"] == 1
    assert m["box_acc@0.5"] == 75.0


def test_mirg_protocol_parses_raw_text_per_dialect():
    from mirg.answers import get_dialect

    samples = [mk(0), mk(1)]
    preds = [
        Prediction(
            "s0", "<think>.</think><answer>Image-2 <|box_start|>(100,100),(500,500)<|box_end|></answer>"
        ),
        Prediction("s1", '<think>.</think><answer>{"image": 2, "bbox_2d": [28, 28, 140, 140]}</answer>'),
    ]
    q2 = score_items(samples[:1], preds[:1], "mirg", dialect=get_dialect("qwen2_vl"))
    assert q2[0].iou == pytest.approx(1.0)
    q25 = score_items(
        samples[1:], preds[1:], "mirg", dialect=get_dialect("qwen2_5_vl"), size_of=lambda s, k: (280, 280)
    )
    assert q25[0].iou == pytest.approx(1.0)
    # the classic bug: reading pixel answers as 0-1000 gives a tiny box and a miss
    wrong = score_items(samples[1:], preds[1:], "mirg", dialect=get_dialect("qwen2_vl"))
    assert wrong[0].iou < 0.5


def test_missing_and_rounding():
    samples = [mk(i) for i in range(3)] + [mk(9, task="u")]
    preds = [Prediction("s0", "", image=2, box=(0.1, 0.1, 0.5, 0.5))]
    m = score(samples, preds, "mirg")
    assert m["tasks"]["t"]["acc@0.5"] == 33.33 and m["tasks"]["t"]["missing"] == 2
    assert m["tasks"]["u"]["acc@0.5"] == 0.0
    # average of the two-decimal task values, rounded half up: (33.33 + 0) / 2 = 16.665 -> 16.67
    assert m["average"]["acc@0.5"] == 16.67
    assert score(samples, preds, "mirg", missing="skip")["tasks"]["t"]["n"] == 1
    assert "AVG" in format_table(m) and "| metric |" in format_markdown(m)
    with pytest.raises(KeyError):
        score(samples, [Prediction("nope", "")], "mirg")


def test_a_missing_prediction_is_not_a_wrong_image_when_the_target_image_is_unknown():
    """Image accuracy counts only items whose target image is known, answered or missing alike."""
    samples = [mk(0), mk(1), mk(2, target_image=None)]
    m = score(samples, [Prediction("s0", "", image=2, box=(0.1, 0.1, 0.5, 0.5))], "mirg")["tasks"]["t"]
    assert (m["image_acc"], m["image_unknown"], m["missing"]) == (50.0, 1, 2)


# --- the CLI: outputs and one-line errors --------------------------------------------------------------------


def write_bench(tmp_path):
    bench = tmp_path / "bench.jsonl"
    rows = [mk(0).to_dict(), mk(1).to_dict()]
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return bench


def run_cli(args, capsys):
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_score_writes_json_and_markdown(tmp_path, capsys):
    bench = write_bench(tmp_path)
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        json.dumps({"id": "s0", "raw_output": "x", "pred_image": 2, "pred_box": [0.1, 0.1, 0.5, 0.5]}) + "\n"
        + json.dumps({"id": "s1", "raw_output": "x", "pred_image": None, "pred_box": None}) + "\n"
    )  # fmt: skip
    rc, out, _ = run_cli(["score", "--bench", str(bench), "--predictions", str(preds), "--json",
                          str(tmp_path / "m.json"), "--markdown", str(tmp_path / "m.md")], capsys)  # fmt: skip
    assert rc == 0 and "Acc@0.5" in out
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["tasks"]["t"] == {"acc@0.3": 50.0, "acc@0.5": 50.0, "acc@0.7": 50.0, "miou": 50.0, "image_acc": 50.0,
                               "box_acc@0.5": 50.0, "n": 2, "image_unknown": 0, "missing": 0}  # fmt: skip
    assert m["average"]["acc@0.5"] == 50.0
    assert "| Acc@0.5 | 50.00 | 50.00 |" in (tmp_path / "m.md").read_text()


@pytest.mark.parametrize(
    "lines, expect",
    [
        (['{"id": "s0", "raw_output": "x"}', '{"id": "s1", "raw_output": '], "p.jsonl:2: invalid JSON"),
        (['{"id": "s0"}'], "p.jsonl:1: field 'raw_output': missing"),
        (
            ['{"id": "s0", "raw_output": "x"}', "", '{"id": "s0", "raw_output": "y"}'],
            "p.jsonl:3: field 'id': duplicate",
        ),
        (['{"id": "zz", "raw_output": "x"}'], "p.jsonl:1: field 'id': id 'zz' is not in the benchmark"),
        (['{"id": "s0", "raw_output": "x", "pred_box": [1, 2]}'], "p.jsonl:1: field 'pred_box'"),
    ],
)
def test_cli_malformed_predictions_one_line(tmp_path, capsys, lines, expect):
    bench = write_bench(tmp_path)
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(lines) + "\n")
    rc, _, err = run_cli(
        ["score", "--bench", str(bench), "--predictions", str(preds), "--dialect", "qwen2_vl"], capsys
    )
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("mirg: error: ") and expect in err
    assert "Traceback" not in err


def test_cli_malformed_bench_and_unmatched_results(tmp_path, capsys):
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps(mk(0).to_dict()) + "\n" + '{"id": "b", "task": "t"}\n')
    rc, _, err = run_cli(["score", "--bench", str(bench), "--predictions", str(bench)], capsys)
    assert (
        rc == 2
        and "bench.jsonl:2: missing required field(s): images, question" in err
        and err.count("\n") == 1
    )
    good = write_bench(tmp_path)
    res = tmp_path / "res.json"
    res.write_text(
        json.dumps([{"task": "t", "question": "other", "answer": "(1,2),(3,4)", "groundtruth": [1, 1, 5, 5]}])
    )
    rc, _, err = run_cli(
        ["score", "--bench", str(good), "--predictions", str(res), "--protocol", "official"], capsys
    )
    assert rc == 2 and "res.json:1: no bench item matches task='t'" in err


def test_cli_raw_text_needs_dialect(tmp_path, capsys):
    bench = write_bench(tmp_path)
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "s0", "raw_output": "x"}) + "\n")
    rc, _, err = run_cli(["score", "--bench", str(bench), "--predictions", str(preds)], capsys)
    assert rc == 2 and "--dialect" in err


@needs_migbench
def test_cli_reproduction_end_to_end(tmp_path, capsys):
    rc, out, _ = run_cli(["score", "--bench", str(REVISED), "--predictions", str(RESULTS / "migician"),
                          "--protocol", "official", "--y-rescale", "migician", "--json", str(tmp_path / "m.json")], capsys)  # fmt: skip
    assert rc == 0
    assert json.loads((tmp_path / "m.json").read_text())["average"]["acc@0.5"] == 63.38
    assert "Static" in out.splitlines()[1] and "63.38" in out
