"""``mirg demo``: settings, progress/ETA lines, resumable stages, the report pieces, and (slow) a reduced demo end
to end — both reports with the tables, plots and gallery, a rerun that skips every stage, and ``--ablation``.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

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


def test_cost_scale_follows_text_compute(tmp_path):
    from mirg.demo.pipeline import model_cost_scale
    from mirg.models.tiny import SIZES

    assert model_cost_scale(None) == 1.0
    text = {**SIZES["tiny"]["text"], "num_hidden_layers": 6}  # three times the tiny model's two layers
    (tmp_path / "config.json").write_text(json.dumps({"text_config": text}))
    assert model_cost_scale(tmp_path) == pytest.approx(3.0)


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


SHIPPED = REPO / "assets" / "tiny_base"


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHIPPED / "model.safetensors").is_file(), reason="no shipped base under assets/tiny_base"
)
def test_reduced_demo_from_the_shipped_base(tmp_path):
    """The default base path: the shipped base, its image size and the pretrained learning rates, and the
    report's line on the base's own grounding. The base already answers in the qwen2_5_vl dialect."""
    from dataclasses import replace

    from mirg.demo.pipeline import load_settings, run_demo

    settings = replace(
        load_settings(REPO / "configs/demo/smoke.yaml", sft_steps=2, rl_steps=1), image_size=None
    )
    out = tmp_path / "demo"
    summary = run_demo(out, settings, stream=io.StringIO())
    assert summary["warning"] is None and summary["base"]["source"] == "shipped (assets/tiny_base)"
    used = summary["settings"]
    assert used["image_size"] == 224 and (used["sft_learning_rate"], used["rl_learning_rate"]) == (5e-4, 3e-5)
    assert "Base: shipped (assets/tiny_base) pretrained checkpoint" in (out / "report.md").read_text()
    preds = [
        json.loads(line) for line in (out / "eval" / "base" / "predictions.jsonl").read_text().splitlines()
    ]
    assert preds and all(p["raw_output"].startswith("<think>Image-") for p in preds), preds[:2]


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
