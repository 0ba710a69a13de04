"""mirg eval: batched == one-at-a-time, resumable predictions, scoring, input errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from mirg.errors import DataError, ImageError
from mirg.evaluation.writer import KEYS, PredictionsWriter

MAX_NEW = 20


def _requests(path, n=None):
    from mirg.evaluation.backends import Request
    from mirg.images import open_images
    from mirg.sample import read_samples

    samples = read_samples(path)[:n]
    return [Request(s, open_images(s.images, path.parent)) for s in samples]


def test_batched_equals_one_at_a_time(tiny_model, synthetic_data):
    from mirg.evaluation.backends import TransformersBackend

    backend = TransformersBackend(tiny_model, max_new_tokens=MAX_NEW)
    reqs = _requests(synthetic_data)
    single = [backend.generate([r])[0] for r in reqs]
    batched = backend.generate(reqs[:7]) + backend.generate(reqs[7:])
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.resized_wh for g in batched] == [g.resized_wh for g in single]
    assert len({g.text for g in single}) > 1  # the outputs depend on the input (not a constant model)


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _eval(tiny_model, data, out, **kw):
    from mirg.evaluation.runner import evaluate

    kw.setdefault("batch_size", 4)
    return evaluate(tiny_model, data, out, max_new_tokens=MAX_NEW, progress=False, **kw)


def test_eval_writes_predictions_and_metrics(tiny_model, synthetic_data, tmp_path):
    metrics = _eval(tiny_model, synthetic_data, tmp_path)
    lines = _lines(tmp_path / "predictions.jsonl")
    assert [tuple(r) for r in lines] == [KEYS] * 12
    assert sorted(r["id"] for r in lines) == [f"s{i:04d}" for i in range(12)]
    for r in lines:
        assert r["pred_box"] is None or (len(r["pred_box"]) == 4 and isinstance(r["pred_box"][0], float))
        assert r["seconds"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["tasks"] == metrics["tasks"] and set(saved["tasks"]) == {"common_object", "spot_diff"}
    assert metrics["protocol"] == "mirg" and metrics["average"]["n"] == 12
    assert metrics["run"]["generated_this_run"] == 12
    md = (tmp_path / "metrics.md").read_text()
    assert "| metric |" in md and "Image acc" in md and "AVG" in md
    # the predictions file is what `mirg score` reads too
    from mirg.predictions import read_predictions_jsonl

    assert len(read_predictions_jsonl(tmp_path / "predictions.jsonl")) == 12


def test_resume_after_interruption_and_torn_line(tiny_model, synthetic_data, tmp_path):
    full = _eval(tiny_model, synthetic_data, tmp_path / "full")

    class Killed(Exception):
        pass

    def die(n):
        if n >= 4:
            raise Killed

    with pytest.raises(Killed):
        _eval(tiny_model, synthetic_data, tmp_path / "cut", after_batch=die)
    pred = tmp_path / "cut" / "predictions.jsonl"
    assert len(_lines(pred)) == 4
    # a kill -9 in the middle of the next write leaves a torn last line
    next_line = json.dumps({"id": "s0011", "task": "spot_diff", "raw_output": "half"})
    with pred.open("a") as fh:
        fh.write(next_line[:25])
    resumed = _eval(tiny_model, synthetic_data, tmp_path / "cut", batch_size=3)
    ids = [r["id"] for r in _lines(pred)]
    assert Counter(ids) == Counter(f"s{i:04d}" for i in range(12))
    assert resumed["run"]["resumed"] == 4 and resumed["run"]["generated_this_run"] == 8
    assert resumed["tasks"] == full["tasks"] and resumed["average"] == full["average"]
    by_id = {r["id"]: r["raw_output"] for r in _lines(tmp_path / "full" / "predictions.jsonl")}
    assert {r["id"]: r["raw_output"] for r in _lines(pred)} == by_id
    # a finished run reruns without generating anything
    again = _eval(tiny_model, synthetic_data, tmp_path / "cut")
    assert again["run"]["generated_this_run"] == 0 and again["average"] == full["average"]


def test_writer_truncates_torn_line_and_rejects_corruption(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"id": "a", "raw_output": "x"}\n{"id": "b", "raw_o')
    w = PredictionsWriter(p)
    assert set(w.done) == {"a"} and w.repaired_bytes > 0
    w.write([{"id": "b", "raw_output": "y"}])
    with pytest.raises(ValueError, match="already written"):
        w.write([{"id": "a", "raw_output": "z"}])
    w.close()
    assert [r["id"] for r in _lines(p)] == ["a", "b"]

    p.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(DataError, match=r"p\.jsonl:2: corrupt line"):
        PredictionsWriter(p)
    p.write_text('{"id": "a"}\n{"id": "a"}\n')
    with pytest.raises(DataError, match="duplicate"):
        PredictionsWriter(p)


def test_missing_images_fail_before_anything(make_samples, tmp_path):
    from mirg.evaluation.runner import evaluate

    data = make_samples(tmp_path / "d", 8, seed=3)
    images = sorted((tmp_path / "d" / "images").iterdir())
    for p in images[:7]:
        p.unlink()
    with pytest.raises(ImageError) as e:
        evaluate(tmp_path / "no-model", data, tmp_path / "out", progress=False)
    msg = str(e.value)
    assert msg.startswith(f"7 of {len(images)} images are missing under {tmp_path / 'd'}: ")
    assert str(images[0]) in msg and "(and 2 more)" in msg
    assert not (tmp_path / "out").exists()


def test_migbench_json_with_image_root(tiny_model, make_samples, tmp_path):
    from mirg.sample import read_samples

    data = make_samples(tmp_path / "d", 4, seed=5, max_images=2)
    bench = []
    for s in read_samples(data):
        bench.append({"task": "refer_grounding" if s.num_images == 2 else "region", "images": s.images,
                      "question": s.question, "answer": [round(v * 1000) for v in s.target_box]})  # fmt: skip
    bench_path = tmp_path / "bench" / "bench.json"
    bench_path.parent.mkdir()
    bench_path.write_text(json.dumps(bench))
    with pytest.raises(ImageError, match=r"^5 of 5 images are missing under .*bench: "):
        _eval(tiny_model, bench_path, tmp_path / "o1", limit=3)
    metrics = _eval(tiny_model, bench_path, tmp_path / "o2", image_root=tmp_path / "d", limit=3)
    assert metrics["average"]["n"] == 3
    assert len(_lines(tmp_path / "o2" / "predictions.jsonl")) == 3


def test_eval_cli(tiny_model_dir, synthetic_data, tmp_path, capsys):
    from mirg.cli import main

    argv = ["eval", "--model", str(tiny_model_dir), "--data", str(synthetic_data), "--out", str(tmp_path),
            "--batch-size", "6", "--limit", "6", "--max-new-tokens", "8", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "protocol: mirg" in out and "6 samples (0 resumed, 6 generated" in out
    assert main(argv) == 0
    assert "6 samples (6 resumed, 0 generated)" in capsys.readouterr().out
    assert main([*argv, "--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirg: error: model directory not found") and err.count("\n") == 1


@pytest.mark.slow
def test_kill_9_mid_run_then_resume(tiny_model_dir, make_samples, tmp_path):
    """A real `mirg eval` process killed with SIGKILL mid-run; the rerun completes every id exactly once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from mirg.evaluation.runner import evaluate
    from mirg.models.loading import load_model

    data = make_samples(tmp_path / "d", 40, seed=11)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-c", "import sys; from mirg.cli import main; sys.exit(main(sys.argv[1:]))",
           "eval", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
           "--batch-size", "2", "--max-new-tokens", "48", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pred = out / "predictions.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if pred.exists() and pred.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the eval finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = pred.read_text().count("\n")
    assert 4 <= n_before < 40
    model = load_model(tiny_model_dir)
    resumed = evaluate(model, data, out, batch_size=8, max_new_tokens=48, progress=False)
    full = evaluate(model, data, tmp_path / "full", batch_size=8, max_new_tokens=48, progress=False)
    ids = [json.loads(x)["id"] for x in pred.read_text().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 40
    assert resumed["run"]["resumed"] == n_before
    assert resumed["tasks"] == full["tasks"] and resumed["average"] == full["average"]
