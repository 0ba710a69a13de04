"""Fuzzing the readers, the scorer, eval's writer and the rewards (issue 29): every case ends in a scored miss or
one ``mirg: error:`` line with exit 2 — never a traceback, never a partial or duplicated output file.

Hypothesis runs derandomized (the same cases every time) without a shared database; the CLI is called
in-process. ``test_fuzz_case_count`` checks that the file ran at least 2,000 cases.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirg.cli import main

CASES: Counter[str] = Counter()  # cases run, per test
EXITS: Counter[int] = Counter()  # CLI exit statuses seen
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]


def fuzz(cases: int) -> settings:
    return settings(
        max_examples=cases, derandomize=True, database=None, deadline=None, suppress_health_check=HEALTH
    )


# --- strategies ----------------------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 0.5, 0.999, 1000, 999.5, -0.0, 1e309]),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
num_text = st.one_of(
    st.integers(-5, 1200).map(str),
    st.floats(-10, 1200, allow_nan=False).map(lambda v: f"{v:.2f}"),
    st.sampled_from(["9" * 400, "Infinity", "NaN", "-0", "1e309", "", "1.0", "0"]),
)
box_text = st.lists(num_text, max_size=5).map(lambda v: "[" + ", ".join(v) + "]")
image_text = st.one_of(
    st.integers(-2, 6).map(str),
    st.sampled_from(['"Image-1"', "1.0", "true", "null", '"2"', '"the second image"']),
)
json_answer = st.builds(lambda i, b: f'{{"image": {i}, "bbox_2d": {b}}}', image_text, box_text)
qwen2_answer = st.builds(
    lambda k, a, b, c, d: f"Image-{k} <|box_start|>({a},{b}),({c},{d})<|box_end|>",
    st.integers(-1, 6), num_text, num_text, num_text, num_text,
)  # fmt: skip
fragment = st.one_of(
    json_answer,
    qwen2_answer,
    st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "Image-2", "```json", "```"]),
    st.text(max_size=16),
)
model_outputs = st.one_of(
    st.lists(fragment, max_size=8).map("".join),
    st.builds(
        lambda t, a: f"<think>{t}</think><answer>{a}</answer>",
        st.text(max_size=24),
        st.one_of(json_answer, qwen2_answer),
    ),
)

SAMPLE = {"id": "s0", "task": "common_object", "images": ["a.png", "b.png"], "question": "Which one? Locate it.",
          "target_image": 2, "target_box": [0.1, 0.2, 0.5, 0.6]}  # fmt: skip
BENCH_ITEM = {"task": "refer_grounding", "images": ["a.png", "b.png"], "question": "Find it in the second image.",
              "answer": [100, 200, 300, 400], "additional_info": "", "need_format": True}  # fmt: skip


@st.composite
def valid_box(draw: Any, integer: bool = False) -> list[float]:
    xs = sorted(draw(st.lists(st.integers(0, 1000), min_size=2, max_size=2, unique=True)))
    ys = sorted(draw(st.lists(st.integers(0, 1000), min_size=2, max_size=2, unique=True)))
    box = [xs[0], ys[0], xs[1], ys[1]]
    return box if integer else [v / 1000 for v in box]


valid_samples = st.builds(
    lambda q, n, t, box: SAMPLE | {"question": q, "images": [f"{k}.png" for k in range(n)], "target_image": min(t, n),
                                   "target_box": box},
    st.text(max_size=30), st.integers(1, 4), st.integers(1, 4), valid_box(),
)  # fmt: skip
valid_items = st.builds(
    lambda q, task, box: BENCH_ITEM | {"question": q, "task": task, "answer": box},
    st.text(max_size=30), st.sampled_from(["diff", "region", "group_grounding", "reasoning", "other"]),
    valid_box(integer=True),
)  # fmt: skip


def mutated(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with some keys dropped and some values replaced (by random JSON or by plausible near-misses)."""
    plausible = {
        "images": st.lists(st.one_of(st.text(max_size=6), numbers), max_size=3),
        "answer": st.lists(numbers, min_size=3, max_size=5),
        "target_box": st.lists(numbers, min_size=3, max_size=5),
        "target_image": st.one_of(st.integers(-1, 4), numbers),
        "additional_info": json_values,
    }

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        rec = dict(base)
        for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=2, unique=True)):
            del rec[key]
        for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=2, unique=True)):
            rec[key] = draw(plausible.get(key, json_values))
        return rec

    return build()


# --- helpers -------------------------------------------------------------------------------------------------


def run_cli(argv: list[Any], outputs: list[Path], capsys: pytest.CaptureFixture[str]) -> int:
    """Run ``mirg`` in-process; exit 0 (outputs written) or 2 with exactly one error line (no output written)."""
    for p in outputs:
        p.unlink(missing_ok=True)
    rc = main([str(a) for a in argv])
    EXITS[rc] += 1
    captured = capsys.readouterr()
    errors = [ln for ln in captured.err.splitlines() if not ln.startswith("mirg: warning: ")]
    if rc == 2:
        assert len(errors) == 1 and errors[0].startswith("mirg: error: "), captured.err
        assert not any(p.exists() for p in outputs), "an error left an output behind"
    else:
        assert rc == 0 and not errors, (rc, captured.err)
        assert all(p.exists() for p in outputs)
    return rc


def finite_unit(v: float) -> bool:
    return math.isfinite(v) and 0.0 <= v <= 1.0


# --- model outputs: parse, eval's writer, scoring, rewards -------------------------------------------------


@fuzz(700)
@given(text=model_outputs, dialect=st.sampled_from(["qwen2_5_vl", "qwen2_vl"]), n=st.integers(1, 3))
def test_fuzz_model_outputs_end_in_a_scored_miss_or_hit(text: str, dialect: str, n: int) -> None:
    from mirg.answers import get_dialect
    from mirg.evaluation.backends import Generation
    from mirg.evaluation.runner import parse_generation
    from mirg.evaluation.writer import PredictionsWriter
    from mirg.predictions import read_predictions_jsonl
    from mirg.rewards import RewardConfig, format_reward, image_reward, object_reward, reward_terms
    from mirg.sample import Sample
    from mirg.scoring import score_items

    CASES["outputs"] += 1
    sample = Sample("s0", "t", [f"{k}.png" for k in range(n)], "q", 1, (0.1, 0.2, 0.5, 0.6))
    sizes = [(112, 84)] * n
    rec = parse_generation(sample, Generation(text, 1, sizes), get_dialect(dialect))
    if rec["pred_box"] is not None:
        assert all(math.isfinite(v) and abs(v) <= 10 for v in rec["pred_box"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.jsonl"
        with PredictionsWriter(path) as w:
            w.write([{"id": "s0", "task": "t", "raw_output": text, **rec, "seconds": 0.0}])
        with PredictionsWriter(path) as w:  # a resume sees it done: nothing is written twice
            assert set(w.done) == {"s0"}
        preds = read_predictions_jsonl(path, [sample])
    (item,) = score_items([sample], preds, "mirg")
    assert finite_unit(item.iou) and (item.iou == 0.0 or item.image_correct)
    terms = reward_terms(text, 1, (0.1, 0.2, 0.5, 0.6), n, sizes, RewardConfig(dialect=dialect))
    assert all(finite_unit(v) for v in (terms.format, terms.image, terms.object))
    assert (terms.format == 1.0) == (terms.reason == "")
    columns = {"target_image": [1], "target_box": [[0.1, 0.2, 0.5, 0.6]], "images": [sample.images],
               "resized_sizes": [sizes], "dialect": [dialect]}  # fmt: skip
    assert [f([text], **columns)[0] for f in (format_reward, image_reward, object_reward)] == [
        terms.format, terms.image, terms.object]  # fmt: skip


# --- Sample records and MIG-Bench records through `mirg score` ----------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "empty.jsonl").write_text("")
    return folder


def score_bench(work: Path, bench: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "metrics.json"
    if (
        run_cli(
            ["score", "--bench", bench, "--predictions", work / "empty.jsonl", "--json", out], [out], capsys
        )
        == 0
    ):
        metrics = json.loads(out.read_text())
        assert metrics["average"]["n"] >= 1 and metrics["average"]["acc@0.5"] == 0.0


@fuzz(450)
@given(records=st.lists(valid_samples, min_size=1, max_size=3)
       | st.lists(valid_samples | mutated(SAMPLE) | json_values, max_size=3),
       bom=st.booleans())  # fmt: skip
def test_fuzz_sample_files(
    work: Path, capsys: pytest.CaptureFixture[str], records: list[Any], bom: bool
) -> None:
    CASES["samples"] += 1
    lines = [
        json.dumps(r | {"id": f"s{i}"} if isinstance(r, dict) and "id" in r else r)
        for i, r in enumerate(records)
    ]
    bench = work / "samples.jsonl"
    bench.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "".join(x + "\n" for x in lines).encode())
    score_bench(work, bench, capsys)


@fuzz(450)
@given(items=st.lists(valid_items, min_size=1, max_size=3)
       | st.lists(valid_items | mutated(BENCH_ITEM), max_size=3),
       indent=st.sampled_from([None, 1]), wrap=st.sampled_from([False] * 5 + [True]))  # fmt: skip
def test_fuzz_migbench_files(work: Path, capsys: pytest.CaptureFixture[str], items: list[Any], indent: Any,
                             wrap: bool) -> None:  # fmt: skip
    CASES["migbench"] += 1
    bench = work / "bench.json"
    bench.write_text(json.dumps({"items": items} if wrap else items, indent=indent))
    score_bench(work, bench, capsys)


# --- predictions files through `mirg score` ----------------------------------------------------------------


prediction_records = st.fixed_dictionaries(
    {"id": st.sampled_from(["s0", "s1", "s2", "zz"])},
    optional={
        "raw_output": st.one_of(model_outputs, json_values),
        "pred_image": st.one_of(st.integers(-1, 4), json_values),
        "pred_box": st.one_of(
            st.lists(st.floats(-0.5, 1.5), min_size=4, max_size=4), st.lists(numbers, max_size=5), json_values
        ),
        "parse_error": st.one_of(st.none(), st.text(max_size=8)),
    },
)

good_predictions = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["s0", "s1", "s2"]),
        "raw_output": model_outputs,
        "pred_image": st.one_of(st.none(), st.integers(1, 3)),
        "pred_box": st.one_of(st.none(), st.lists(st.floats(-0.5, 1.5), min_size=4, max_size=4)),
    }
)


@fuzz(500)
@given(records=st.lists(good_predictions, max_size=3, unique_by=lambda r: r["id"])
       | st.lists(good_predictions | prediction_records | json_values, max_size=3),
       garbage=st.sampled_from(["", "", "", "\n\n", "{", "not json\n"]),
       options=st.sampled_from([[], ["--dialect", "qwen2_vl"], ["--protocol", "official"], ["--missing", "skip"]]))  # fmt: skip
def test_fuzz_prediction_files(work: Path, capsys: pytest.CaptureFixture[str], records: list[Any], garbage: str,
                               options: list[str]) -> None:  # fmt: skip
    CASES["predictions"] += 1
    bench = work / "three.jsonl"
    if not bench.exists():
        bench.write_text("".join(json.dumps(SAMPLE | {"id": f"s{i}"}) + "\n" for i in range(3)))
    preds = work / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in records) + garbage)
    items = work / "items.jsonl"
    if (
        run_cli(
            ["score", "--bench", bench, "--predictions", preds, "--items", items, *options], [items], capsys
        )
        == 0
    ):
        rows = [json.loads(x) for x in items.read_text().splitlines()]
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)) and (len(ids) == 3 or "--missing" in options)
        assert all(finite_unit(r["iou"]) for r in rows)


def test_fuzz_case_count() -> None:
    """The fuzz tests above ran at least 2,000 cases in all (skipped when they were deselected)."""
    if len(CASES) < 4:
        pytest.skip("run the whole file to count its cases")
    assert sum(CASES.values()) >= 2000, CASES
    assert EXITS[0] >= 300 and EXITS[2] >= 300, EXITS  # both ends are exercised
    print(f"fuzz: {sum(CASES.values())} cases {dict(CASES)}, CLI exits {dict(EXITS)}")
