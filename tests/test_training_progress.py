"""Training output: no Python dict per step on the console (transformers' PrinterCallback / ProgressCallback are
replaced), a progress line every few steps when stderr is not a terminal, the main process only, and every step
still in metrics.jsonl."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from test_training import make_rl_data, sft_overrides, write_trajectories


def _state(step: int, total: int = 5, main: bool = True) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=total, is_world_process_zero=main)


def test_a_line_every_n_steps_and_one_at_the_end(caplog, tmp_path):
    from mirg.training.metrics import read_metrics
    from mirg.training.progress import TrainingLog

    args = SimpleNamespace(disable_tqdm=False)
    cb = TrainingLog(tmp_path, "sft", every=2, bar=False)
    with caplog.at_level(logging.INFO, logger="mirg.training"):
        cb.on_train_begin(args, _state(0), None)
        for step in range(1, 6):
            cb.on_step_end(args, _state(step), None)
            cb.on_log(
                args, _state(step), None, logs={"loss": 1.0 / step, "grad_norm": 3.0, "learning_rate": 1e-4}
            )
        cb.on_log(args, _state(5), None, logs={"train_runtime": 75.0, "train_loss": 0.5})
        cb.on_train_end(args, _state(5), None)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[0] for line in lines] == ["sft step 2/5 (40%)", "sft step 4/5 (80%)",
                                                       "sft step 5/5 (100%)", "sft done"]  # fmt: skip
    assert "loss 0.25, lr 0.0001 |" in lines[1] and "elapsed, ~" in lines[1]
    assert lines[-1] == "sft done: 5 steps in 1:15, mean loss 0.5"
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5, 5]  # and the summary


def test_other_processes_print_nothing(caplog, tmp_path):
    from mirg.training.progress import TrainingLog

    args = SimpleNamespace(disable_tqdm=False)
    cb = TrainingLog(tmp_path, "rl", every=1, bar=True)
    with caplog.at_level(logging.INFO, logger="mirg.training"):
        cb.on_train_begin(args, _state(0, main=False), None)
        cb.on_log(args, _state(1, main=False), None, logs={"reward": 1.0})
    assert cb.bar is None and not caplog.records and not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.parametrize("disable_tqdm", ["true", "false"])
def test_sft_console_has_no_per_step_dicts(tiny_model_dir, tmp_path, capfd, caplog, disable_tqdm):
    from conftest import make_synthetic_samples

    from mirg.cli import main
    from mirg.training.metrics import read_metrics

    samples = make_rl_data(make_synthetic_samples, tmp_path / "synth", 4, seed=1)
    traj = write_trajectories(samples, tiny_model_dir, tmp_path / "traj" / "trajectories.jsonl")
    args = sft_overrides(tiny_model_dir, traj, tmp_path / "sft", steps=2, disable_tqdm=disable_tqdm)
    with caplog.at_level(logging.INFO, logger="mirg"):
        assert main(["sft", *args, "--log-level", "info"]) == 0
    captured = capfd.readouterr()
    console = captured.out + captured.err
    assert "{'loss'" not in console and "'loss':" not in console, console[-2000:]
    assert "sft step 2/2 (100%): loss " in caplog.text and "sft done: 2 steps in" in caplog.text
    assert [r["step"] for r in read_metrics(tmp_path / "sft") if "loss" in r] == [1, 2]


def test_mirg_log_lines_follow_the_current_stderr(monkeypatch):
    """The handler writes to sys.stderr as it is when a line is logged: after pytest, a notebook or a progress
    bar swaps stderr, lines must not go to a stale (maybe closed) stream."""
    import io
    import logging
    import sys

    from mirg.training.stage_cli import setup_logging

    setup_logging()
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    logging.getLogger("mirg.training").info("a line")
    assert buf.getvalue().endswith("mirg: a line\n")
