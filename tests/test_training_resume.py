"""Resuming training: the weights come back exactly (transformers 5 saves Qwen2.5-VL checkpoints in another key
layout than the model's own), metrics.jsonl reads like one run, runs are never mixed in one output_dir, and
``read_metrics`` survives what a killed run leaves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from mirg.errors import MirgError
from test_training import data, sft_overrides  # noqa: F401  (data: a fixture)


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _losses(out: Path) -> dict[int, float]:
    from mirg.training.metrics import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(out) if "loss" in r}


@pytest.fixture(scope="module")
def interrupted(data, tiny_model_dir, tmp_path_factory):  # noqa: F811
    """An SFT run of 4 steps (checkpoints at 2 and 4) and what it ended with; then its last checkpoint and
    final model are deleted (a run killed after step 3) and it is resumed with --resume."""
    from mirg.cli import main

    _, traj = data
    root = tmp_path_factory.mktemp("resume")
    out = root / "sft"
    args = sft_overrides(tiny_model_dir, traj, out, steps=4, save_strategy="steps", save_steps=2, seed=5)
    assert main(["sft", *args]) == 0
    full = {"weights": _weights(out / "model.safetensors"), "losses": _losses(out)}
    shutil.rmtree(out / "checkpoint-4")
    (out / "model.safetensors").unlink()
    with (out / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"stage": "sft", "step": 5, "lo')  # a torn line, as a kill leaves it
    assert main(["sft", *args, "--resume"]) == 0
    return SimpleNamespace(out=out, args=args, full=full, traj=traj, model=tiny_model_dir)


def test_a_resumed_sft_run_ends_with_the_weights_and_losses_of_an_uninterrupted_one(interrupted):
    import torch

    resumed = _weights(interrupted.out / "model.safetensors")
    assert resumed.keys() == interrupted.full["weights"].keys()
    for k, w in interrupted.full["weights"].items():
        assert torch.equal(resumed[k], w), k
    assert (
        _losses(interrupted.out) == interrupted.full["losses"]
    )  # step 3 and 4 too, from the checkpoint's weights


def test_metrics_of_a_resumed_run_read_like_one_run(interrupted):
    from mirg.training.metrics import read_metrics

    recs = read_metrics(interrupted.out)
    assert [r["step"] for r in recs if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in recs if "train_runtime" in r] == [4]  # one end-of-run summary


def test_a_checkpoint_missing_a_weight_stops_the_resume(interrupted, tmp_path, capsys):
    from safetensors.torch import save_file

    from mirg.cli import main

    out = tmp_path / "sft"
    shutil.copytree(interrupted.out, out, ignore=shutil.ignore_patterns(".mirg.lock"))
    path = out / "checkpoint-2" / "model.safetensors"
    weights = _weights(path)
    weights.pop(next(k for k in weights if "visual" in k))
    save_file(weights, str(path), metadata={"format": "pt"})
    args = [a if a != str(interrupted.out) else str(out) for a in interrupted.args]
    assert main(["sft", *args, "--resume", str(out / "checkpoint-2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mirg: error: --resume ") and "missing keys model.visual." in err


def test_rl_trainers_resume_the_checkpoint_weights(interrupted, data):  # noqa: F811
    """GRPO goes through the same exact resume as SFT (share_prompt on and off)."""
    import torch
    from trl import GRPOTrainer

    from mirg.models.loading import load_processor
    from mirg.training.config import parse_stage_config
    from mirg.training.data import rl_dataset
    from mirg.training.grpo_shared import SharedPromptGRPOTrainer
    from mirg.training.modeling import load_policy
    from mirg.training.run import exact_resume
    from mirg.training.stage_cli import stage_types

    samples, _ = data
    checkpoint = interrupted.out / "checkpoint-2"
    saved = _weights(checkpoint / "model.safetensors")
    types, defaults = stage_types("rl")
    overrides = ["--model_name_or_path", str(interrupted.model), "--train_file", str(samples), "--output_dir",
                 str(interrupted.out.parent / "rl"), "--num_generations", "2", "--per_device_train_batch_size", "2",
                 "--max_completion_length", "8", "--report_to", "none"]  # fmt: skip
    (_, args, model_args), _ = parse_stage_config(types, None, overrides, cpu=True, defaults=defaults)
    ds, _ = rl_dataset(samples, "qwen2_5_vl", load_processor(interrupted.model))
    for cls in (SharedPromptGRPOTrainer, GRPOTrainer):
        policy = load_policy(model_args)
        trainer = exact_resume(cls)(model=policy.model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                                    args=args, train_dataset=ds, processing_class=policy.processor)  # fmt: skip
        trainer._load_from_checkpoint(str(checkpoint))
        own = policy.model.state_dict()
        # the file's keys are the Hub layout (model.layers.*, visual.*); the model's are model.language_model.*, ...
        assert (
            "model.layers.0.mlp.up_proj.weight" in saved
            and "model.language_model.layers.0.mlp.up_proj.weight" in own
        )
        assert torch.equal(
            own["model.language_model.layers.0.mlp.up_proj.weight"],
            saved["model.layers.0.mlp.up_proj.weight"],
        )
        assert torch.equal(
            own["model.visual.blocks.0.mlp.up_proj.weight"], saved["visual.blocks.0.mlp.up_proj.weight"]
        )


# ---------------------------------------------------------------------------------------------- run mixing
@pytest.mark.parametrize(
    "change, message",
    [
        (
            [],
            "holds checkpoint-2, checkpoint-4 of an earlier run: continue it with --resume, or use a new output_dir",
        ),
        (["--resume", "--learning_rate", "0.002"], "another sft run (different learning_rate)"),
        (["--resume", "--seed", "6"], "another sft run (different seed)"),
        (["--resume", "--per_device_train_batch_size", "1"], "different per_device_train_batch_size"),
        (["--resume", "--train_file", "OTHER"], "another sft run (different train_data)"),
    ],
)
def test_training_refuses_to_mix_runs(interrupted, tmp_path, capsys, change, message):
    from mirg.cli import main

    other = interrupted.traj.parent / "first-only.jsonl"  # its image paths are relative to its folder
    other.write_text(interrupted.traj.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    change = [str(other) if c == "OTHER" else c for c in change]
    before = sorted(p.name for p in interrupted.out.iterdir())
    assert main(["sft", *interrupted.args, *change]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert "--overwrite" not in err and "--out " not in err
    assert sorted(p.name for p in interrupted.out.iterdir()) == before  # nothing touched


def test_a_checkpoint_of_another_folder_or_without_a_manifest_is_refused(interrupted, tmp_path, capsys):
    from mirg.cli import main

    out = tmp_path / "sft"
    shutil.copytree(interrupted.out, out, ignore=shutil.ignore_patterns(".mirg.lock", "mirg-run.json"))
    args = [a if a != str(interrupted.out) else str(out) for a in interrupted.args]
    assert main(["sft", *args, "--resume", str(interrupted.out / "checkpoint-2")]) == 2
    assert "not a checkpoint of output_dir" in capsys.readouterr().err
    assert (
        main(["sft", *args, "--resume"]) == 2
    )  # checkpoints of an older mirg: no manifest says what made them
    err = capsys.readouterr().err
    assert "no mirg-run.json" in err and "use a new output_dir" in err


def test_step_counts_may_change_on_resume(interrupted, tmp_path):
    from mirg.training.config import parse_stage_config
    from mirg.training.run import run_settings
    from mirg.training.stage_cli import stage_types

    types, defaults = stage_types("sft")

    def settings(*extra: str) -> dict:
        return run_settings(
            *parse_stage_config(types, None, [*interrupted.args, *extra], defaults=defaults)[0]
        )

    base = settings()
    assert settings("--max_steps", "9", "--save_steps", "3", "--logging_steps", "2") == base
    assert settings("--lr_scheduler_type", "cosine") != base
    assert json.loads(json.dumps(base)) == base  # what the manifest stores compares equal


# ---------------------------------------------------------------------------------------------- metrics.jsonl
def _write(folder: Path, lines: list[str], end: str = "\n") -> Path:
    (folder / "metrics.jsonl").write_text("\n".join(lines) + end, encoding="utf-8")
    return folder


def test_read_metrics_skips_a_torn_last_line(tmp_path, capsys):
    from mirg.training.metrics import read_metrics

    good = [json.dumps({"stage": "sft", "step": s, "loss": 1.0}) for s in (1, 2)]
    torn = _write(tmp_path, [*good, '{"stage": "sft", "st'], end="")  # no newline after it: a killed writer
    assert [r["step"] for r in read_metrics(torn)] == [1, 2]
    assert "unfinished last line" in capsys.readouterr().err
    with pytest.raises(MirgError, match=r"metrics.jsonl:3: invalid JSON"):  # a complete bad line is not torn
        read_metrics(_write(tmp_path, [*good, "\x00garbage"]))


@pytest.mark.parametrize(
    "bad, message",
    [("{not json", ":2: invalid JSON"), ("[1, 2]", ":2: not a metrics record"),
     ('{"stage": "sft", "loss": 1.0}', ":2: not a metrics record"), ('{"step": "3"}', ":2: not a metrics record")],
)  # fmt: skip
def test_read_metrics_names_a_bad_line(tmp_path, bad, message):
    from mirg.training.metrics import read_metrics

    good = json.dumps({"stage": "sft", "step": 1, "loss": 1.0})
    with pytest.raises(MirgError, match=f"metrics.jsonl{message}"):
        read_metrics(_write(tmp_path, [good, bad]))


def test_a_resumed_callback_drops_what_came_after_the_checkpoint(tmp_path):
    from mirg.training.metrics import read_metrics
    from mirg.training.progress import TrainingLog

    lines = [json.dumps({"stage": "rl", "step": s, "reward": 0.5}) for s in (1, 2, 3, 4)]
    _write(tmp_path, [*lines, json.dumps({"stage": "rl", "step": 4, "train_runtime": 1.0}), '{"sta'], end="")
    state = SimpleNamespace(global_step=2, max_steps=4, is_world_process_zero=True)
    cb = TrainingLog(tmp_path, "rl", resume=True, bar=False)
    cb.on_train_begin(None, state, None)
    state.global_step = 3
    cb.on_log(None, state, None, logs={"reward": 0.75})
    assert [(r["step"], r["reward"]) for r in read_metrics(tmp_path)] == [(1, 0.5), (2, 0.5), (3, 0.75)]
