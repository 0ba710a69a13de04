"""``mirg demo``: settings, progress/ETA lines, resumable stages, the report pieces, and (slow) a reduced demo end
to end — both reports with the tables, plots and gallery, a rerun that skips every stage, and ``--ablation``.
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest
from PIL import Image

from mirg.errors import MirgError

REPO = Path(__file__).resolve().parents[1]


def test_settings_yaml_and_overrides(tmp_path):
    from mirg.demo.pipeline import DemoSettings, load_settings

    assert load_settings() == DemoSettings()
    cfg = tmp_path / "d.yaml"
    cfg.write_text("sft_steps: 7\nreasoning: short\n", encoding="utf-8")
    s = load_settings(cfg, seed=3, rl_steps=None)
    assert (s.sft_steps, s.reasoning, s.seed, s.rl_steps) == (7, "short", 3, DemoSettings().rl_steps)
    cfg.write_text("sft_step: 7\n", encoding="utf-8")
    with pytest.raises(MirgError, match=r"unknown setting.*sft_step"):
        load_settings(cfg)
    with pytest.raises(MirgError, match="reasoning"):
        load_settings(reasoning="long")
    with pytest.raises(MirgError, match="sft_replay must be >= 0"):
        load_settings(sft_replay=-1)
    with pytest.raises(MirgError, match="sft_replay_images must be"):
        load_settings(sft_replay_images=[3, 2])
    assert load_settings(REPO / "configs/demo/smoke.yaml").sft_steps < DemoSettings().sft_steps


def test_learning_rates_follow_the_base_unless_given(tmp_path):
    from mirg.demo.pipeline import DemoSettings

    rand, pre = DemoSettings().for_base(None), DemoSettings().for_base(tmp_path)
    assert (rand.sft_learning_rate, rand.rl_learning_rate) == (3e-3, 3e-4)
    assert (pre.sft_learning_rate, pre.rl_learning_rate) == (5e-4, 3e-5)
    given = DemoSettings(rl_learning_rate=1e-4).for_base(tmp_path)
    assert (given.sft_learning_rate, given.rl_learning_rate) == (5e-4, 1e-4)


def test_image_size_follows_the_base_unless_given(tmp_path):
    from mirg.demo.pipeline import DemoSettings

    assert DemoSettings().for_base(None).image_size == 112
    assert DemoSettings().for_base(tmp_path).image_size == 112  # no metrics.json: the pretrain default
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"image_size": 224}}))
    assert DemoSettings().for_base(tmp_path).image_size == 224
    assert DemoSettings(image_size=112).for_base(tmp_path).image_size == 112
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(MirgError, match=r"metrics\.json"):
        DemoSettings().for_base(tmp_path)


def test_report_states_the_base_grounding(tmp_path):
    from mirg.demo.pipeline import base_grounding
    from mirg.demo.report import base_note

    assert base_grounding(None) is None and base_grounding(tmp_path) is None and base_note({}) == ""
    metrics = {"refer_short_prompt": {"acc@0.5": 0.576}, "config": {"max_objects": None, "image_size": 224}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    refer = base_grounding(tmp_path)
    assert refer == {"acc@0.5": 0.576, "max_objects": 5}
    note = base_note({"source": "shipped (assets/tiny_base)", "single_image_refer": refer})
    assert "57.6 % on 1-5-object scenes, which is below" in note
    note = base_note({"source": "--base", "single_image_refer": {"acc@0.5": 0.99, "max_objects": 1}})
    assert "99.0 % on 1-object scenes, which is below" in note
    assert "which meets" in base_note({"single_image_refer": {"acc@0.5": 0.93, "max_objects": 5}})


def test_cost_scale_follows_layers_then_compute(tmp_path):
    from mirg.demo.pipeline import model_cost_scale
    from mirg.models.tiny import SIZES

    def scale(image_size=None, **text):
        (tmp_path / "config.json").write_text(json.dumps({"text_config": {**SIZES["tiny"]["text"], **text}}))
        return model_cost_scale(tmp_path, image_size)

    assert model_cost_scale(None) == 1.0 and model_cost_scale(None, 448) == pytest.approx(2.0)
    assert scale(num_hidden_layers=6) == pytest.approx(3.0)  # three times the tiny model's two layers
    # twice as wide (4x the compute per token): overhead-bound, as the tiny model
    assert scale(hidden_size=256, num_attention_heads=8, num_key_value_heads=4, intermediate_size=512) == 1.0
    assert scale(224, num_hidden_layers=3) == pytest.approx(1.5 * 2**0.5)  # the shipped bases' layout
    # 16x the tiny model's width, 2 layers: compute-bound, 1/8 of the text compute ratio
    big = dict(hidden_size=2048, num_attention_heads=64, num_key_value_heads=32, intermediate_size=4096)
    assert scale(**big) == pytest.approx(256 / 8)
    (tmp_path / "config.json").write_text("{}")  # an unknown layout: only the image factor
    assert model_cost_scale(tmp_path, 224) == pytest.approx(2**0.5)


def test_shorten_keeps_the_last_steps():
    from mirg.demo.pipeline import shorten

    text = "question step\nobjects step\ncross-image step\nlocate step"
    assert shorten(text, "full") == text
    assert shorten(text, "short") == "cross-image step\nlocate step"
    assert shorten(text, "brief") == "locate step"


def test_progress_lines_give_elapsed_and_what_is_left():
    from mirg.demo.pipeline import Progress

    stream = io.StringIO()
    p = Progress([("a", 10.0), ("b", 30.0)], stream)
    t0 = p.begin("a")
    p.finish("a", t0)
    p.finish("b", None, skipped=True)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[demo] [1/2] a: running")
    assert re.match(r"\[demo\] \[1/2\] a: done in \d+s \| elapsed \d+s \| ~\d+s left", lines[1])
    assert "[2/2] b: skipped (already done)" in lines[2] and lines[2].endswith("~0s left")


def test_stage_markers_skip_finished_work_and_redo_changed_settings(tmp_path):
    from mirg.demo.pipeline import run_stage

    calls = []

    def work(tag):
        def f():
            calls.append(tag)
            (tmp_path / "st" / "out.txt").write_text(tag)

        return f

    assert run_stage(None, "x", tmp_path / "st", {"k": 1}, ["out.txt"], work("first"))
    assert not run_stage(None, "x", tmp_path / "st", {"k": 1}, ["out.txt"], work("again"))
    assert run_stage(None, "x", tmp_path / "st", {"k": 2}, ["out.txt"], work("changed"))
    (tmp_path / "st" / "out.txt").unlink()  # an output gone: the stage is redone
    assert run_stage(None, "x", tmp_path / "st", {"k": 2}, ["out.txt"], work("lost"))
    assert calls == ["first", "changed", "lost"]


def test_base_resolution(tmp_path, monkeypatch):
    from mirg.demo import pipeline

    monkeypatch.setattr(pipeline, "SHIPPED_BASE", tmp_path / "nothing")
    assert pipeline.resolve_base(None) == (None, "none")
    with pytest.raises(MirgError, match="not a checkpoint folder"):
        pipeline.resolve_base(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert pipeline.resolve_base(tmp_path) == (tmp_path, "--base")
    monkeypatch.setattr(pipeline, "SHIPPED_BASE", tmp_path)
    assert pipeline.resolve_base(None)[0] == tmp_path


def test_ablation_table_mean_and_spread():
    from mirg.demo.report import ablation_rows

    results = {
        "seeds": [0, 1],
        "variants": {
            "v": {"label": "SFT only", "runs": [{"average": {"acc@0.5": 10.0, "image_acc": 50.0, "miou": 20.0}},
                                                {"average": {"acc@0.5": 20.0, "image_acc": 50.0, "miou": 30.0}}]},
        },
    }  # fmt: skip
    header, rows = ablation_rows(results)
    assert header[1].startswith("Acc@0.5") and rows == [
        ["SFT only", "15.0 ± 7.1", "50.0 ± 0.0", "25.0 ± 7.1", "2"]
    ]


def test_stage_table_gives_hits_with_an_interval_and_paired_tests():
    from mirg.demo.report import paired_lines, summary_rows

    ids = [f"s{i}" for i in range(40)]
    hits = {
        "base": {i: k < 2 for k, i in enumerate(ids)},  # 2 right: s0, s1
        "sft": {i: 1 <= k < 13 for k, i in enumerate(ids)},  # 12 right: s1..s12 (one shared with base)
    }
    metrics = {
        k: {"average": {"acc@0.5": 100 * sum(h.values()) / 40}, "tasks": {"t": {"n": 40}}}
        for k, h in hits.items()
    }
    header, rows = summary_rows(metrics, hits)
    assert header[-1] == "hits (Acc@0.5 95 % CI)"
    assert rows[0][-1] == "2/40 (1.4-16.5)" and rows[1][-1] == "12/40 (18.1-45.4)"
    assert summary_rows(metrics)[0][-1] == "n"  # no hits: no interval column
    (line,) = paired_lines(hits)
    assert line == (
        "SFT vs base on the same 40 samples: right only for SFT 11, only for base 1; exact McNemar p = 0.0063"
    )


def test_constant_image_floor_is_the_best_fixed_image_averaged_over_tasks(tmp_path):
    from mirg.demo.report import constant_image_line

    assert constant_image_line(tmp_path) == ""
    targets = {"a": [1, 1, 1, 2], "b": [2, 2, 3, 3, 3, 3]}  # Image-1: (75 + 0) / 2; Image-2: (25 + 33.3) / 2
    rows = [
        {"id": f"{t}{i}", "task": t, "images": ["x.png", "y.png", "z.png"], "question": "q",
         "target_image": k, "target_box": [0.1, 0.1, 0.2, 0.2]}
        for t, ks in targets.items() for i, k in enumerate(ks)
    ]  # fmt: skip
    (tmp_path / "data" / "test").mkdir(parents=True)
    (tmp_path / "data" / "test" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = constant_image_line(tmp_path)
    assert line.startswith("Naming Image-1 for every sample") and "image accuracy 37.5:" in line  # 3: 33.3


def test_wilson_interval_and_sign_test_known_values():
    from mirg.stats import sign_test, wilson_interval

    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert sign_test(0, 5) == pytest.approx(0.0625) and sign_test(3, 3) == 1.0 and sign_test(0, 0) == 1.0
    assert sign_test(1, 11) == pytest.approx(2 * 13 / 4096)


SHIPPED = REPO / "assets" / "tiny_base"


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHIPPED / "model.safetensors").is_file(), reason="no shipped base under assets/tiny_base"
)
def test_reduced_demo_from_the_shipped_base(tmp_path, caplog):
    """The default base path: the shipped base, its image size and the pretrained learning rates, and the
    report's line on the base's own grounding. The base already answers in the qwen2_5_vl dialect. Replay rows
    at the base's image size reach the SFT set."""
    from dataclasses import replace

    from mirg.demo.pipeline import load_settings, run_demo

    settings = replace(
        load_settings(
            REPO / "configs/demo/smoke.yaml", sft_steps=2, rl_steps=1, sft_replay=5, sft_replay_images=[1, 2]
        ),
        image_size=None,
    )
    out = tmp_path / "demo"
    with caplog.at_level(logging.INFO, logger="mirg"):
        summary = run_demo(out, settings, stream=io.StringIO())
    replay = out / "traj" / "replay" / "replay.jsonl"
    rows = [json.loads(line) for line in replay.read_text().splitlines()]
    assert len(rows) == 5 and {len(r["images"]) for r in rows} <= {1, 2}
    assert "demo replay: 5 referring rows of 1-2 images" in caplog.text
    assert f"SFT replay: 5 rows from {replay} mixed in" in caplog.text
    with Image.open(out / "traj" / "replay" / rows[0]["images"][0]) as im:
        assert im.size == (224, 224)
    assert summary["warning"] is None and summary["base"]["source"] == "shipped (assets/tiny_base)"
    used = summary["settings"]
    assert used["image_size"] == 224 and (used["sft_learning_rate"], used["rl_learning_rate"]) == (5e-4, 3e-5)
    assert "Base: shipped (assets/tiny_base) pretrained checkpoint" in (out / "report.md").read_text()
    preds = [
        json.loads(line) for line in (out / "eval" / "base" / "predictions.jsonl").read_text().splitlines()
    ]
    assert preds and all(p["raw_output"].startswith("<think>Image-") for p in preds), preds[:2]
    # benchmarks/paired_demo.py: a run against itself agrees on every sample of every stage
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "paired_demo.py"), str(out), str(out)],
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["stage"] for r in rows] == ["base", "sft", "rl"]
    assert all(r["only_first"] == r["only_second"] == 0 and r["p_two_sided"] == 1.0 for r in rows)
    assert rows[0]["common"] == len(preds)
    # benchmarks/sft_seed.py: the demo's own seed repeats its SFT stage's answers; another seed is a new run
    sys.path.insert(0, str(REPO / "benchmarks"))
    from sft_seed import rerun_sft

    def sft_answers(folder: Path) -> list[str]:
        lines = (folder / "eval" / "sft" / "predictions.jsonl").read_text().splitlines()
        return [json.loads(line)["raw_output"] for line in lines]

    rerun_sft(out, tmp_path / "same", summary["settings"]["seed"])
    assert sft_answers(tmp_path / "same") == sft_answers(out)
    rerun_sft(out, tmp_path / "other", summary["settings"]["seed"] + 1)
    assert len(sft_answers(tmp_path / "other")) == len(preds)


@pytest.mark.slow
def test_reduced_demo_end_to_end_resumes_and_runs_the_ablation(tmp_path, monkeypatch):
    from mirg.demo import pipeline
    from mirg.demo.pipeline import NO_BASE_WARNING, load_settings, run_demo

    monkeypatch.setattr(pipeline, "SHIPPED_BASE", tmp_path / "no-base")  # the random fallback, whatever ships
    settings = load_settings(REPO / "configs/demo/smoke.yaml", sft_steps=3, rl_steps=1)
    out = tmp_path / "demo"
    log = io.StringIO()
    summary = run_demo(out, settings, stream=log)
    text = log.getvalue()
    assert NO_BASE_WARNING in text and summary["warning"] == NO_BASE_WARNING
    assert re.search(r"\[4/9\] sft: done in \d+s \| elapsed \S+ \| ~\S+ left", text)

    md = (out / "report.md").read_text(encoding="utf-8")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert NO_BASE_WARNING in md and NO_BASE_WARNING in page
    for stage in ("| base |", "| SFT |", "| SFT+RL |", "| diff |", "| common_object |", "| AVG |"):
        assert stage in md
    assert "hits (Acc@0.5 95 % CI)" in md and "- SFT+RL vs SFT on the same 6 samples: right only" in md
    assert "exact McNemar p =" in page and "(the best fixed answer on this test set)" in md
    assert "![SFT loss](plots/sft_loss.png)" in md and "![RL rewards](plots/rl_rewards.png)" in md
    assert (out / "plots" / "sft_loss.png").stat().st_size > 1000
    gallery = sorted((out / "gallery").glob("*.png"))
    assert gallery and all(f"gallery/{p.name}" in md for p in gallery)
    assert "**Question:**" in md and "**Model reasoning:**" in md
    # self-contained HTML: every picture embedded, no file references
    assert page.count("src='data:image/png;base64,") == 2 + len(gallery) and "src='plots/" not in page
    assert "<td>SFT+RL</td>" in page and "Question:" in page
    metrics = json.loads((out / "eval" / "rl" / "metrics.json").read_text())
    assert sum(t["n"] for t in metrics["tasks"].values()) == 6

    # rerun with the same --out: every stage is found done; then --ablation adds only the ablation runs
    log = io.StringIO()
    run_demo(out, settings, stream=log, ablation=True)
    text = log.getvalue()
    for stage in ("data", "trajectories", "sft", "rl", "eval base", "eval sft", "eval sft+rl"):
        assert f"] {stage}: skipped (already done)" in text
    assert "ablation seed 1: rl sft_rl_dual: done" in text and "ablation seed 0: rl rl_only: done" in text
    results = json.loads((out / "ablation" / "results.json").read_text())
    assert set(results["variants"]) == {"sft_only", "rl_only", "sft_rl_object", "sft_rl_dual"}
    assert all(len(v["runs"]) == 2 for v in results["variants"].values())
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Ablation" in md and "| SFT + RL, dual image-gated reward (MIRG-RL) |" in md
    assert "Ablation" in (out / "report.html").read_text(encoding="utf-8")


def test_cli_wiring(tmp_path):
    import argparse

    from mirg.demo import cli

    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(["--out", str(tmp_path), "--seed", "2", "--ablation", "--config", "x.yaml"])
    assert (args.out, args.seed, args.ablation, args.config, args.base) == (
        str(tmp_path),
        2,
        True,
        "x.yaml",
        None,
    )
