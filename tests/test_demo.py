"""``mirg demo``: settings, progress/ETA lines, resumable stages, the report pieces, and (slow) a reduced demo end
to end — both reports with the tables, plots and gallery, a rerun that skips every stage, and ``--ablation``.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from mirg.errors import MirgError

REPO = Path(__file__).resolve().parents[1]


def test_settings_yaml_and_overrides(tmp_path):
    from mirg.demo.settings import DemoSettings, load_settings

    assert load_settings() == DemoSettings()
    cfg = tmp_path / "d.yaml"
    cfg.write_text("sft_steps: 7\nreasoning: short\nimages: [2, 2]\n", encoding="utf-8")
    s = load_settings(cfg, seed=3, rl_steps=None)
    assert (s.sft_steps, s.reasoning, s.seed, s.rl_steps) == (7, "short", 3, DemoSettings().rl_steps)
    # --key value words (the command line) over the YAML, dashes or underscores
    s = load_settings(
        cfg, ["--sft-steps", "9", "--images", "2", "4", "--tasks", "diff", "--rl_learning_rate", "1e-5"]
    )
    assert (s.sft_steps, s.images, s.tasks, s.rl_learning_rate, s.reasoning) == (
        9,
        [2, 4],
        ["diff"],
        1e-5,
        "short",
    )
    cfg.write_text("sft_step: 7\n", encoding="utf-8")
    with pytest.raises(MirgError, match=r"unknown key.*sft_step"):
        load_settings(cfg)
    with pytest.raises(MirgError, match=r"unknown option.*--sft-step"):
        load_settings(None, ["--sft-step", "3"])
    with pytest.raises(MirgError, match="sft_steps must be >= 1"):
        load_settings(None, ["--sft_steps", "0"])
    with pytest.raises(MirgError, match="reasoning"):
        load_settings(reasoning="long")
    assert load_settings(REPO / "configs/demo/smoke.yaml").sft_steps < DemoSettings().sft_steps


def test_learning_rates_follow_the_base_unless_given(tmp_path):
    from mirg.demo.settings import DemoSettings

    rand, pre = DemoSettings().for_base(None), DemoSettings().for_base(tmp_path)
    assert (rand.sft_learning_rate, rand.rl_learning_rate) == (3e-3, 3e-4)
    assert (pre.sft_learning_rate, pre.rl_learning_rate) == (5e-4, 3e-5)
    given = DemoSettings(rl_learning_rate=1e-4).for_base(tmp_path)
    assert (given.sft_learning_rate, given.rl_learning_rate) == (5e-4, 1e-4)


def test_image_size_follows_the_base_unless_given(tmp_path):
    from mirg.demo.settings import DemoSettings

    assert DemoSettings().for_base(None).image_size == 112
    assert DemoSettings().for_base(tmp_path).image_size == 112  # no metrics.json: the pretrain default
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"image_size": 224}}))
    assert DemoSettings().for_base(tmp_path).image_size == 224
    assert DemoSettings(image_size=112).for_base(tmp_path).image_size == 112
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(MirgError, match=r"metrics\.json"):
        DemoSettings().for_base(tmp_path)


def test_report_states_the_base_grounding(tmp_path):
    from mirg.demo.report import base_note
    from mirg.demo.settings import base_grounding

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
    from mirg.demo.progress import model_cost_scale
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


def test_progress_lines_give_elapsed_and_what_is_left():
    from mirg.demo.progress import Progress

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
    from mirg.demo.progress import Progress
    from mirg.demo.stages import run_stage

    calls = []
    progress = Progress([("x", 1.0)], io.StringIO())

    def work(tag):
        def f():
            calls.append(tag)
            (tmp_path / "st" / "out.txt").write_text(tag)

        return f

    assert run_stage(progress, "x", tmp_path / "st", {"k": 1}, ["out.txt"], work("first"))
    assert not run_stage(progress, "x", tmp_path / "st", {"k": 1}, ["out.txt"], work("again"))
    assert run_stage(progress, "x", tmp_path / "st", {"k": 2}, ["out.txt"], work("changed"))
    (tmp_path / "st" / "out.txt").unlink()  # an output gone: the stage is redone
    assert run_stage(progress, "x", tmp_path / "st", {"k": 2}, ["out.txt"], work("lost"))
    assert calls == ["first", "changed", "lost"]


def test_base_resolution(tmp_path):
    from mirg.demo.settings import resolve_base

    assert resolve_base(None, tmp_path / "nothing") == (None, "none")
    with pytest.raises(MirgError, match="not a checkpoint folder"):
        resolve_base(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert resolve_base(tmp_path) == (tmp_path, "--base")
    assert resolve_base(None, tmp_path)[0] == tmp_path


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
def test_reduced_demo_from_the_shipped_base(tmp_path):
    """The default base path: the shipped base, its image size and the pretrained learning rates, and the
    report's line on the base's own grounding. The base already answers in the qwen2_5_vl dialect."""
    from dataclasses import replace

    from mirg.demo.pipeline import run_demo
    from mirg.demo.settings import load_settings

    settings = replace(
        load_settings(REPO / "configs/demo/smoke.yaml", sft_steps=2, rl_steps=1), image_size=None
    )
    out = tmp_path / "demo"
    summary = run_demo(out, settings, stream=io.StringIO())
    row = json.loads((out / "traj" / "trajectories.jsonl").read_text().splitlines()[0])
    with Image.open(out / "traj" / row["images"][0]) as im:
        assert im.size == (224, 224)
    assert summary["warning"] is None and summary["base"]["source"] == "shipped (assets/tiny_base)"
    used = summary["settings"]
    assert used["image_size"] == 224 and (used["sft_learning_rate"], used["rl_learning_rate"]) == (5e-4, 3e-5)
    assert "Base: shipped (assets/tiny_base) pretrained checkpoint" in (out / "report.md").read_text()
    preds = [
        json.loads(line) for line in (out / "eval" / "base" / "predictions.jsonl").read_text().splitlines()
    ]
    assert preds and all(p["raw_output"].startswith("<think>Image-") for p in preds), preds[:2]
    # mirg compare: a stage against itself agrees on every sample
    from mirg.cli import main

    rl = str(out / "eval" / "rl")
    assert main(["compare", rl, rl, "--json", str(tmp_path / "c.json")]) == 0
    (pair,) = json.loads((tmp_path / "c.json").read_text())["pairs"]
    assert pair["acc"]["all"]["n"] == len(preds) and pair["acc"]["all"]["p"] == 1.0
    assert pair["acc"]["all"]["only_a"] == pair["image"]["all"]["only_b"] == 0

    # the lab's SFT-seed probe on this finished demo (it reuses the demo's stages): the demo's own seed repeats
    # its SFT stage's answers; another seed is a new run
    from lab.probes.sft_seed import rerun_sft

    def sft_answers(folder: Path) -> list[str]:
        lines = (folder / "eval" / "sft" / "predictions.jsonl").read_text().splitlines()
        return [json.loads(line)["raw_output"] for line in lines]

    rerun_sft(out, tmp_path / "same", summary["settings"]["seed"])
    assert sft_answers(tmp_path / "same") == sft_answers(out)
    rerun_sft(out, tmp_path / "other", summary["settings"]["seed"] + 1)
    assert len(sft_answers(tmp_path / "other")) == len(preds)


@pytest.mark.slow
def test_reduced_demo_end_to_end_resumes_and_runs_the_ablation(tmp_path, monkeypatch):
    from mirg.demo import settings as demo_settings
    from mirg.demo.pipeline import run_demo
    from mirg.demo.settings import NO_BASE_WARNING, load_settings

    monkeypatch.setattr(
        demo_settings, "SHIPPED_BASE", tmp_path / "no-base"
    )  # the random fallback, whatever ships
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
    assert results["variants"]["sft_only"]["runs"][0]["eval_dir"] == "eval/sft"  # relative to --out
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Ablation" in md and "| SFT + RL, dual image-gated reward (MIRG-RL) |" in md
    assert "Ablation" in (out / "report.html").read_text(encoding="utf-8")
    # the paired ablation table: dual vs object-only per seed, summed over seeds, from the runs' own answers
    from mirg.demo.report import ablation_paired_rows
    from mirg.runs import load_run

    assert "## Ablation, paired on the test samples" in md
    _, pairs = ablation_paired_rows(out, results)
    assert [r[1] for r in pairs] == ["Acc@0.5", "image accuracy"] * 3
    dual = {r["seed"]: r["eval_dir"] for r in results["variants"]["sft_rl_dual"]["runs"]}
    obj = {r["seed"]: r["eval_dir"] for r in results["variants"]["sft_rl_object"]["runs"]}
    data = out / "data" / "test" / "samples.jsonl"
    only = [0, 0]
    for seed in (0, 1):
        a = load_run(out / dual[seed], "a", data).hits("image")
        b = load_run(out / obj[seed], "b", data).hits("image")
        only[0] += sum(a[i] and not b[i] for i in a)
        only[1] += sum(b[i] and not a[i] for i in a)
    assert pairs[1][0].startswith("SFT + RL, dual") and pairs[1][3] == f"{only[0]} / {only[1]}"
    assert "seed 0: " in pairs[1][2] and "seed 1: " in pairs[1][2]


def test_cli_wiring(tmp_path):
    import argparse

    from mirg.demo import cli

    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(["--out", str(tmp_path), "--seed", "2", "--ablation", "--config", "x.yaml"])
    assert (args.out, args.overrides, args.ablation, args.config, args.base) == (
        str(tmp_path),
        ["--seed", "2"],
        True,
        "x.yaml",
        None,
    )
    assert "--sft_steps (500): SFT steps" in p.format_help()


def test_a_second_demo_into_the_same_folder_is_refused(tmp_path):
    from mirg.demo.pipeline import run_demo
    from mirg.outputs import locked

    with locked(tmp_path), pytest.raises(MirgError, match="in use by another mirg run"):
        run_demo(tmp_path, stream=io.StringIO())
    assert not (tmp_path / "data").exists()  # refused before any work


# --- issue 31: separate SFT / RL / validation splits, RL knobs, GRPO diagnostics ------------------------------


def test_demo_split_and_rl_defaults():
    """The defaults: SFT and GRPO on splits of their own, no validation split, TRL's constant schedule at beta 0
    with group scaling, the dual gated reward with unit weights; rl_per_task 0 puts GRPO on the SFT split."""
    from mirg.demo.ablation import DUAL_REWARD
    from mirg.demo.settings import DemoSettings, load_settings

    s = DemoSettings()
    assert (s.train_per_task, s.rl_per_task, s.val_per_task, s.reasoning) == (128, 64, 0, "compact")
    assert s.data_seeds() == {"train": 1, "test": 2, "rl": 3, "val": None}
    assert load_settings(None, ["--rl_per_task", "0"]).data_seeds()["rl"] is None
    assert s.rl_reward() == DUAL_REWARD
    assert s.rl_schedule() == {"lr_scheduler_type": "constant", "warmup_steps": 0, "beta": 0.0,
                               "scale_rewards": "group"}  # fmt: skip
    t = load_settings(
        None, ["--seed", "2", "--rl_per_task", "5", "--val_per_task", "3", "--val_data_seed", "77"]
    )
    assert t.data_seeds() == {"train": 2001, "test": 2002, "rl": 2003, "val": 77}
    assert len(set(t.data_seeds().values())) == 4  # every split its own seed
    u = load_settings(None, ["--object_variant", "giou", "--w_format", "0.5", "--rl_beta", "0.04"])
    assert u.rl_reward() == {**DUAL_REWARD, "w_format": 0.5, "object_variant": "giou"}
    assert u.rl_schedule()["beta"] == 0.04
    bad_values = (["--object_variant", "dice"], ["--rl_per_task", "-1"], ["--val_per_task", "-1"],
                  ["--rl_scale_rewards", "token"])  # fmt: skip
    for bad in bad_values:
        with pytest.raises(MirgError):
            load_settings(None, bad)
    assert load_settings(reasoning="brief").reasoning == "brief"


def test_distractors_reach_every_split_and_only_set_ones_are_fingerprinted(tmp_path):
    """``distractors`` goes to MIG-Synth (fewer extra objects per image) and into the data stages' key only when
    set, so a default run keeps its stage markers."""
    import json

    from mirg.demo.settings import DemoSettings, load_settings
    from mirg.demo.stages import synth_stage

    assert "distractors" not in DemoSettings().data_digest()
    s = load_settings(None, ["--distractors", "0", "0", "--tasks", "diff", "group_grounding"], image_size=112)
    assert s.data_digest()["distractors"] == [0, 0]
    for bad in (["--distractors", "2", "1"], ["--distractors", "0", "11"], ["--distractors", "1"]):
        with pytest.raises(MirgError):
            load_settings(None, bad)

    def objects_per_image(settings: DemoSettings, folder) -> list[int]:
        synth_stage(folder, settings, data_seed=5, n_per_task=6)
        rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
        return [len(objs) for r in rows for objs in r["objects"]]

    few = objects_per_image(s, tmp_path / "few")
    many = objects_per_image(load_settings(None, ["--distractors", "4", "4"], image_size=112, tasks=s.tasks),
                             tmp_path / "many")  # fmt: skip
    assert max(few) <= 2 and min(many) >= 4  # diff needs 1 object per image, group_grounding up to 2


def test_rl_diagnostics_start_and_end(tmp_path):
    from mirg.demo.report import rl_diagnostic_rows, rl_diagnostics, validation_rows

    rl = tmp_path / "rl"
    rl.mkdir()
    rows = [{"stage": "rl", "step": k, "reward": float(k), "rewards/format_reward/mean": 1.0,
             "frac_reward_zero_std": 0.5 if k <= 2 else 0.25, "completions/clipped_ratio": 0.1,
             "entropy": 2.0 - k / 10} for k in range(1, 21)]  # fmt: skip
    (rl / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    d = rl_diagnostics(rl)
    assert d["steps"] == 20 and d["reward"] == (1.5, 19.5)  # tenths: steps 1-2 and 19-20
    assert d["groups with zero reward spread"] == (0.5, 0.25) and "KL" not in d
    header, table = rl_diagnostic_rows(tmp_path)
    assert header[:3] == ["GRPO run", "steps", "reward"] and "KL" not in header
    assert table == [["SFT+RL", "20", "1.500 -> 19.500", "1.000 -> 1.000", "0.500 -> 0.250", "0.100 -> 0.100",
                      "1.850 -> 0.050"]]  # fmt: skip
    assert rl_diagnostics(tmp_path / "none") is None
    # under batch-level advantage scaling TRL's zero-std share tests the batch, not the groups: left out
    (rl / "stage.json").write_text(json.dumps({"settings": {"scale_rewards": "batch"}}))
    assert "groups with zero reward spread" not in rl_diagnostics(rl)
    (rl / "stage.json").write_text(json.dumps({"settings": {}}))
    assert rl_diagnostics(rl)["groups with zero reward spread"] == (0.5, 0.25)
    avg = {"acc@0.5": 12.5, "image_acc": 70.0, "miou": 11.0}
    _, val = validation_rows({"validation": {"sft": avg, "rl": avg}})
    assert val[1] == ["SFT+RL", "12.5", "70.0", "11.0"]
    assert validation_rows({})[1] == []


@pytest.mark.slow
def test_reduced_demo_with_rl_and_validation_splits(tmp_path, monkeypatch):
    """rl_per_task / val_per_task: an RL split and a validation split with seeds of their own, no image shared
    with the SFT or test split; GRPO trains on the RL split; SFT and SFT+RL are evaluated on the validation
    split; the report has the GRPO diagnostics and validation tables; demo.json records every seed."""
    from mirg.demo import settings as demo_settings
    from mirg.demo.pipeline import run_demo
    from mirg.demo.settings import load_settings

    monkeypatch.setattr(demo_settings, "SHIPPED_BASE", tmp_path / "no-base")  # the random tiny model: fast
    settings = load_settings(
        REPO / "configs/demo/smoke.yaml",
        ["--train_per_task", "2", "--rl_per_task", "2", "--val_per_task", "1", "--reasoning", "compact",
         "--rl_beta", "0.04", "--object_variant", "giou", "--sft_steps", "2", "--rl_steps", "2",
         "--freeze_vision", "true"],
    )  # fmt: skip
    out = tmp_path / "demo"
    log = io.StringIO()
    summary = run_demo(out, settings, stream=log)
    assert summary["data_seeds"] == {"train": 1, "test": 2, "rl": 3, "val": 4}
    assert summary["data_overlap_images"] == 0
    assert set(summary["validation"]) == {"sft", "rl"}
    n = {
        k: len((out / "data" / k / "samples.jsonl").read_text().splitlines()) for k in ("train", "rl", "val")
    }
    assert n == {"train": 6, "rl": 6, "val": 3}
    rl_log = json.loads((out / "rl" / "stage.json").read_text())["settings"]
    assert rl_log["rl_data"] == {"n": 2, "seed": 3} and rl_log["beta"] == 0.04
    assert rl_log["reward"]["object_variant"] == "giou"
    # freeze_vision: SFT and GRPO leave the vision tower and merger as the base had them, and train the rest
    import torch
    from safetensors.torch import load_file

    base, sft, rl = (load_file(out / d / "model.safetensors") for d in ("base", "sft", "rl"))
    vision = [k for k in base if ".visual." in k or k.startswith("visual.")]
    assert vision and all(torch.equal(base[k], sft[k]) and torch.equal(base[k], rl[k]) for k in vision)
    assert any(not torch.equal(base[k], sft[k]) for k in base if k not in vision)
    assert rl_log["freeze_vision"] is True
    assert json.loads((out / "sft" / "stage.json").read_text())["settings"]["freeze_vision"] is True
    metrics = json.loads((out / "eval_val" / "rl" / "metrics.json").read_text())
    assert sum(t["n"] for t in metrics["tasks"].values()) == 3
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "GRPO diagnostics" in md and "| SFT+RL | 2 |" in md and "KL" in md
    assert "Validation split (seed 4" in md and '"data_seeds"' in md
    assert "eval val sft+rl: done" in log.getvalue()


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHIPPED / "model.safetensors").is_file(), reason="no shipped base under assets/tiny_base"
)
def test_demo_rl_stage_learns_a_trivial_reward(tmp_path):
    """The demo's GRPO path itself learns (issue 31's probe, shortened): every target moved to Image-1 and only
    the image term paid, so naming Image-1 is all there is to learn; from the shipped base at lr 3e-4 its share
    rises within a few steps of 4 prompts x 4 completions (measured: 0.69 -> 0.94-1.0 in 10 steps)."""
    from dataclasses import replace

    from mirg.demo.report import rl_diagnostics
    from mirg.demo.settings import DemoSettings
    from mirg.demo.stages import rl_stage, synth_stage

    s = replace(DemoSettings(tasks=["refer_grounding", "common_object"], images=[2, 2], image_size=64,
                             rl_steps=8, rl_prompts_per_step=4, num_generations=4, max_completion_length=48,
                             rl_learning_rate=3e-4, temperature=1.0))  # fmt: skip
    data = tmp_path / "data"
    synth_stage(data, s, 5, 8)
    rows = [json.loads(line) for line in (data / "samples.jsonl").read_text().splitlines()]
    (data / "samples.jsonl").write_text("".join(json.dumps({**r, "target_image": 1}) + "\n" for r in rows))
    reward = {"w_format": 0.0, "w_image": 1.0, "w_object": 0.0, "gated": True}
    rl_stage(tmp_path / "rl", SHIPPED, data / "samples.jsonl", s, 0, reward)
    start, end = rl_diagnostics(tmp_path / "rl")["image"]
    assert end >= start + 0.15 and end >= 0.85, (start, end)
