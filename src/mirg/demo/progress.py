"""The demo's stage lines and its estimate of the time left: one line per stage start and end, each with the
elapsed time and what is left, from prior costs per stage rescaled by how fast the finished stages went."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from mirg.demo.settings import DemoSettings


def fmt_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """One line per stage: ``[k/n] stage: done in 1m02s | elapsed 3m10s | ~4m left``; the plan's priors are
    seconds on 2 CPU cores."""

    MIN_PRIOR = 20.0

    def __init__(self, plan: list[tuple[str, float]], stream: Any = None):
        self.plan = plan
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.done: dict[str, float] = {}
        self.measured_prior = 0.0
        self.measured_actual = 0.0

    def left(self) -> float:
        ratio = self.measured_actual / self.measured_prior if self.measured_prior > 0 else 1.0
        return ratio * sum(p for name, p in self.plan if name not in self.done)

    def say(self, text: str) -> None:
        print(f"[demo] {text}", file=self.stream, flush=True)

    def begin(self, name: str) -> float:
        k = [n for n, _ in self.plan].index(name) + 1
        self.say(f"[{k}/{len(self.plan)}] {name}: running (elapsed {fmt_seconds(self.elapsed())})")
        return time.perf_counter()

    def finish(self, name: str, t0: float | None, skipped: bool = False, note: str = "") -> None:
        k = [n for n, _ in self.plan].index(name) + 1
        seconds = 0.0 if t0 is None else time.perf_counter() - t0
        self.done[name] = seconds
        prior = dict(self.plan)[name]
        if not skipped and prior >= self.MIN_PRIOR:  # short stages say little about the speed of long ones
            self.measured_prior += prior
            self.measured_actual += seconds
        what = note or ("skipped (already done)" if skipped else f"done in {fmt_seconds(seconds)}")
        self.say(
            f"[{k}/{len(self.plan)}] {name}: {what} | elapsed {fmt_seconds(self.elapsed())} | "
            f"~{fmt_seconds(self.left())} left"
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def _text_flops_per_token(text: dict[str, Any]) -> float:
    """Multiply-adds per token of a text config's decoder layers (attention projections and MLP)."""
    h, heads = text["hidden_size"], text["num_attention_heads"]
    kv = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or h // heads
    per_layer = 2 * h * heads * head_dim + 2 * h * kv * head_dim + 3 * h * text["intermediate_size"]
    return float(text["num_hidden_layers"] * per_layer)


def model_cost_scale(base_dir: Path | None, image_size: int | None = None) -> float:
    """How much slower than the random tiny model at 112 px a demo step of ``base_dir`` at ``image_size`` is
    expected to be on 2 CPU cores. At these sizes a step is bound by per-layer overhead more than arithmetic: a
    base with 1.5x the tiny model's text layers and 2x its text compute per token took 1.4x as long, and one with
    three layers and 8x the text compute ran the default demo in 12 m 41 s where scaling by text compute said
    about 45 min. So the scale follows the text layer count, times sqrt(image_size / 112) for larger images
    (224 px: 2.1x the tiny model's SFT step time), and follows text compute only past 8x the tiny model's (a
    real checkpoint on a CPU). The estimate is rescaled at run time by the measured speed of the long stages."""
    image = math.sqrt(max(image_size or 112, 112) / 112)
    if base_dir is None:
        return image
    from mirg.models.tiny import SIZES

    tiny = SIZES["tiny"]["text"]
    try:
        text = json.loads((Path(base_dir) / "config.json").read_text(encoding="utf-8"))["text_config"]
        layers = text["num_hidden_layers"] / tiny["num_hidden_layers"]
        compute = _text_flops_per_token(text) / _text_flops_per_token(tiny)
    except (OSError, ValueError, KeyError, TypeError):
        return image  # an unknown layout: the estimate is rescaled by the measured stages anyway
    return image * max(1.0, layers, compute / 8)


def priors(s: DemoSettings, scale: float = 1.0) -> dict[str, float]:
    """Rough seconds per stage on 2 idle CPU cores for the random tiny model, model stages times ``scale``
    (the estimate is rescaled at run time by the measured speed of the long stages)."""
    n_tasks = len(s.tasks) if s.tasks else 11
    n_test = s.test_per_task * n_tasks
    # reasoning tokens per trajectory, plus about 100 of images and question that every length carries
    tok = {"full": 420, "short": 200, "brief": 110, "compact": 80}[s.reasoning] + 100
    rl_step = 2.0 * s.rl_prompts_per_step * s.num_generations / 32 * s.max_completion_length / 128
    # calibrated on the default run of docs/demo.md at seed 1, idle cores (shipped base, 224 px, scale 2.1):
    # SFT 483 s for 500 steps (0.97 s/step), GRPO 423 s for 100 steps, 33 s per evaluation of 440 samples
    return {
        "data": 0.005 * (s.train_per_task + s.test_per_task) * n_tasks + 1,
        "trajectories": 0.005 * s.train_per_task * n_tasks + 1,
        "sft": scale * s.sft_steps * 0.53 * s.sft_batch_size / 8 * tok / 210 + 5,
        "rl": scale * s.rl_steps * rl_step + 5,
        "eval": scale * 0.0002 * n_test * s.eval_max_new_tokens + 2,
    }
