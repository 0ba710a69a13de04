"""What ``mirg sft`` and ``mirg rl`` report while they train, on the main process only: :class:`TrainingLog`.

* Every logging step goes to ``<output_dir>/metrics.jsonl`` (the format: :mod:`mirg.training.metrics`). A fresh
  run starts the file anew; a resumed run first drops what the file holds beyond its checkpoint (the steps after
  it and the end-of-run summary, a torn last line included), then appends: the file reads like one run.
* The console gets progress, not the Python dict per logging step transformers prints (``PrinterCallback``, or
  ``ProgressCallback`` writing above its bar; :func:`attach_training_log` removes both): a tqdm bar with the loss
  or reward and the ETA when stderr is a terminal (and ``disable_tqdm`` is off), otherwise one ``mirg.training``
  log line every ``every`` steps (about 20 lines a run) and one at the end.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from mirg.outputs import write_atomic
from mirg.training.metrics import METRICS_FILE, SUMMARY_KEY, read_metrics

log = logging.getLogger("mirg.training")
# what a line or the bar shows per stage: (logged key, short name)
SHOWN = {
    "sft": (("loss", "loss"), ("mean_token_accuracy", "token acc"), ("learning_rate", "lr")),
    "rl": (("reward", "reward"), ("rewards/format_reward/mean", "format"), ("rewards/image_reward/mean", "image"),
           ("rewards/object_reward/mean", "object"), ("learning_rate", "lr")),
}  # fmt: skip


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class TrainingLog(TrainerCallback):
    def __init__(
        self,
        output_dir: str | Path,
        stage: str,
        resume: bool = False,
        every: int | None = None,
        bar: bool | None = None,
    ):
        self.path = Path(output_dir) / METRICS_FILE
        self.stage, self.resume, self.every, self.want_bar = stage, resume, every, bar
        self.bar: Any = None
        self.last: dict[str, float] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if self.path.is_file() and not self.resume:
            self.path.unlink()
        elif self.path.is_file():  # resumed: state.global_step is the checkpoint's step
            kept = [
                r
                for r in read_metrics(self.path.parent)
                if r["step"] <= state.global_step and SUMMARY_KEY not in r
            ]
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.start, self.first, self.printed = time.monotonic(), state.global_step, state.global_step
        self.every = self.every or max(1, math.ceil(state.max_steps / 20))
        on_tty = self.want_bar if self.want_bar is not None else sys.stderr.isatty() and not args.disable_tqdm
        if on_tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.stage, unit="step",
                            dynamic_ncols=True, file=sys.stderr)  # fmt: skip

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None and state.is_world_process_zero:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        record = {"stage": self.stage, "step": state.global_step}
        for k, v in logs.items():
            if isinstance(v, int | float):
                record[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if SUMMARY_KEY in logs:  # the summary transformers logs at the end
            final = f"{self.stage} done: {state.global_step} steps in {_clock(logs[SUMMARY_KEY])}"
            loss = logs.get("train_loss") if self.stage == "sft" else None
            log.info(final + (f", mean loss {loss:.4g}" if isinstance(loss, int | float) else ""))
            return
        self.last = {name: logs[k] for k, name in SHOWN[self.stage] if isinstance(logs.get(k), int | float)}
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in self.last.items()}, refresh=False)
        elif state.global_step - self.printed >= self.every or state.global_step == state.max_steps:
            self.printed = state.global_step
            log.info(self.line(state.global_step, state.max_steps))

    def line(self, step: int, total: int) -> str:
        elapsed = time.monotonic() - self.start
        done = step - self.first
        eta = elapsed / done * (total - step) if done > 0 else 0.0
        values = ", ".join(f"{k} {v:.4g}" for k, v in self.last.items())
        return (f"{self.stage} step {step}/{total} ({100 * step / max(1, total):.0f}%): {values} | "
                f"{_clock(elapsed)} elapsed, ~{_clock(eta)} left")  # fmt: skip

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def attach_training_log(trainer: Any, stage: str, resume: bool) -> None:
    """Replace transformers' per-step dict printing on ``trainer`` by :class:`TrainingLog`."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TrainingLog(trainer.args.output_dir, stage, resume))
