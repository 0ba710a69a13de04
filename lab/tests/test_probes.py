"""The lab's probes still run against the current code (one of them broke silently once: a changed signature in
the pretraining loop). Tiny settings on the shipped base; the figures themselves are not checked."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "assets" / "tiny_base"
pytestmark = pytest.mark.skipif(not (BASE / "model.safetensors").is_file(), reason="no shipped base")


def _run(probe: str, *args: str) -> str:
    cmd = [sys.executable, "-m", f"lab.probes.{probe}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_pretrain_runs(tmp_path):
    out = tmp_path / "b.json"
    _run("bench_pretrain", "--init", str(BASE), "--image-size", "224", "--batch-size", "2", "--workers", "1",
         "--batches", "1", "--steps", "1", "--json", str(out))  # fmt: skip
    res = json.loads(out.read_text())
    assert res["llm_step_s"] > 0 and res["refer_answers_per_batch"] >= 2


def test_paired_refer_and_refer_errors_run():
    res = json.loads(_run("paired_refer", str(BASE), str(BASE), "--samples", "4", "--threads", "1"))
    # a checkpoint against itself: the same answers, so no discordant scene and p = 1
    assert res["only_first"] == res["only_second"] == 0 and res["p_two_sided"] == 1.0
    assert res["by_expression"] and all(a == b for a, b in res["by_expression"].values())
    multi = json.loads(_run("paired_refer", str(BASE), str(BASE), "--samples", "3", "--multi-image"))
    assert multi["multi_image"] and multi["prompt"] == "mirg" and multi["scenes"] == 3
    errors = json.loads(_run("refer_errors", str(BASE), "--n", "24", "--threads", "1"))
    confused = errors["colour named -> colour boxed (wrong object, other colour)"]
    assert all(" -> " in k and k.split(" -> ")[0] != k.split(" -> ")[1] for k in confused)
    assert sum(confused.values()) <= sum(errors["wrong object differs in"].values())


def test_token_probe_runs(tmp_path):
    out = tmp_path / "p.json"
    _run("token_probe", str(BASE), "--train-scenes", "32", "--heldout", "8", "--epochs", "1", "--threads", "1",
         "--json", str(out))  # fmt: skip
    res = json.loads(out.read_text())
    assert 0.0 <= res["final"]["cell_acc"] <= 1.0 and res["floor_most_common_cell"] > 0


def test_attn_probe_runs(tmp_path):
    out = tmp_path / "a.json"
    _run("attn_probe", str(BASE), "--n", "6", "--json", str(out))
    res = json.loads(out.read_text())
    assert len(res["target_share_by_layer_head"]) == 3 and 0.0 <= res["last_layer_looks_at_target"] <= 1.0
    by_expr = res["acc@0.5_by_expression"]
    assert by_expr and set(by_expr) == set(res["last_layer_looks_at_target_by_expression"])
    assert set(res["vision_head_acc@0.5_by_expression"]) == set(by_expr)


def test_rope_probe_splits_the_models_own_attention_margin(tmp_path):
    out = tmp_path / "r.json"
    _run("rope_probe", str(BASE), "--n", "6", "--json", str(out))
    res = json.loads(out.read_text())
    # the three sections cover every rotary pair, and their margins add up to the model's own attention's
    pairs = sorted(i for a, b in res["sections_pairs"].values() for i in range(a, b))
    assert pairs == list(range(16)) and res["max_error_against_the_models_attention"] < 1e-3
    head = res["by_head"][str(res["binding_head"])]["rotated"]["all"]
    assert abs(head["temporal"] + head["height"] + head["width"] - head["total"]) < 1e-2 and head["n"] == 6


def test_box_positions_covers_every_box_position(tmp_path):
    out = tmp_path / "b.json"
    _run("box_positions", str(BASE), "--n", "5", "--json", str(out))
    res = json.loads(out.read_text())
    rows = res["positions"]
    # one row per position from the first digit on, each answer counted at position 0, fewer further on
    assert [r["position"] for r in rows] == list(range(len(rows))) and len(rows) >= 8
    assert rows[0]["n"] == 5 and all(a["n"] >= b["n"] for a, b in itertools.pairwise(rows))
    for r in rows:
        assert len(r["peaks_at_target_by_head"]) == len(r["loss_by_head"]) == 8
        assert all(0 <= v <= 1 for v in r["peaks_at_target_by_head"]) and all(
            v >= 0 for v in r["loss_by_head"]
        )


def test_sft_retention_runs_and_splits_demo_hits_by_target_image(tmp_path):
    run = tmp_path / "demo"
    (run / "data" / "test").mkdir(parents=True)
    (run / "eval" / "sft").mkdir(parents=True)
    box = [0.1, 0.1, 0.4, 0.4]
    samples = [{"id": f"s{i}", "target_image": t, "target_box": box} for i, t in enumerate((1, 2, 2))]
    (run / "data" / "test" / "samples.jsonl").write_text("\n".join(json.dumps(s) for s in samples))
    preds = [{"id": "s0", "pred_image": 1, "pred_box": box},  # hit
             {"id": "s1", "pred_image": 1, "pred_box": box},  # right box, wrong image
             {"id": "s2", "pred_image": 2, "pred_box": [0.6, 0.6, 0.9, 0.9]}]  # fmt: skip
    (run / "eval" / "sft" / "predictions.jsonl").write_text("\n".join(json.dumps(p) for p in preds))
    lines = [
        json.loads(x)
        for x in _run("sft_retention", str(BASE), "--samples", "2", "--demo", str(run)).splitlines()
    ]
    assert lines[0]["scenes"] == 2 and 0.0 <= lines[0]["box_acc@0.5_any_image"] <= 1.0
    assert lines[1]["by_target_image"] == {"sft": {"1": [1, 1], "2": [2, 0]}}


def test_image_position_runs_and_scores_boxes_whatever_image_is_named():
    from types import SimpleNamespace

    from lab.probes import image_position as mod

    res = json.loads(_run("image_position", str(BASE), "--samples", "3", "--max-new-tokens", "40"))
    assert res["scenes"] == 3
    for condition in ("alone", "first of two", "second of two"):
        assert set(res[condition]) == {"box_acc@0.5_any_image", "names_the_right_image"}
    scenes = [SimpleNamespace(boxes=[(10, 10, 50, 50), (100, 100, 150, 150)], targets=[1])] * 3
    answers = [
        '<answer>{"image": 1, "bbox_2d": [100, 100, 150, 150]}</answer>',  # right box, wrong image: counts for box
        '<answer>{"image": 2, "bbox_2d": [10, 10, 50, 50]}</answer>',  # the other object, right image
        "no answer",
    ]
    assert mod.score(scenes, answers, 2) == {"box_acc@0.5_any_image": 1 / 3, "names_the_right_image": 1 / 3}
