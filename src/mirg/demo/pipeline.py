"""The demo pipeline: stages run in order, each writes one folder under ``OUT`` and a ``stage.json`` marker last;
a rerun with the same ``OUT`` and settings skips every stage whose marker matches (a stage whose settings
changed is redone from scratch).

Layout of ``OUT``::

    data/train, data/test     MIG-Synth (disjoint seeds)          base/    the random base (fallback only)
    traj/                     template trajectories (SFT set)      sft/, rl/   trained models + metrics.jsonl
    eval/{base,sft,rl}/       predictions.jsonl, metrics.json       ablation/   --ablation runs and results.json
    demo.json                 settings, base model, stage times     report.md, report.html, plots/, gallery/
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import mirg
from mirg.errors import MirgError

log = logging.getLogger("mirg.demo")

# Package data, so that a wheel (`pip install .`) runs the same demo as a checkout: `assets/` and `configs/` at the
# repository root are links to these folders.
PACKAGE = Path(mirg.__file__).resolve().parent
SHIPPED_BASE = PACKAGE / "assets" / "tiny_base"
NO_BASE_WARNING = "no pretrained base found: results are at chance"
MARKER = "stage.json"
REASONING = ("full", "short", "brief")
VARIANTS = {  # ablation variant -> (label, starts from SFT, RL reward overrides or None for no RL)
    "sft_only": ("SFT only", True, None),
    "rl_only": ("RL only (from base)", False, {"w_format": 1.0, "w_image": 1.0, "w_object": 1.0, "gated": True}),
    "sft_rl_object": ("SFT + RL, object-only reward", True,
                      {"w_format": 1.0, "w_image": 0.0, "w_object": 1.0, "gated": False}),
    "sft_rl_dual": ("SFT + RL, dual image-gated reward (MIRG-RL)", True,
                    {"w_format": 1.0, "w_image": 1.0, "w_object": 1.0, "gated": True}),
}  # fmt: skip


# Default learning rates by base (docs/demo.md). The random tiny model needs large steps to learn the format at
# all; from a pretrained base, GRPO at 3e-4 turned the answers into digit strings (SFT+RL 0.0 % Acc@0.5) and
# 3e-5 gave the best row (8.0 %).
LEARNING_RATES = {
    "random": {"sft_learning_rate": 3e-3, "rl_learning_rate": 3e-4},
    "pretrained": {"sft_learning_rate": 5e-4, "rl_learning_rate": 3e-5},
}


@dataclass
class DemoSettings:
    """Every knob of a demo run (``--config YAML`` overrides any of them). Sizes are per MIG-Synth task."""

    seed: int = 0
    # data (MIG-Synth; train and test use disjoint seeds)
    tasks: list[str] | None = None  # None: all tasks
    train_per_task: int = 32
    test_per_task: int = 40  # 440 test samples: at 88, one sample moved Acc@0.5 by 1.1 points (docs/demo.md)
    # px per side; None: the size the base was pretrained on (its metrics.json), else 112 (the random tiny
    # model's processor sees 16 vision tokens per 112 px image)
    image_size: int | None = None
    images: list[int] = field(default_factory=lambda: [2, 3])  # min, max images per sample
    # trajectories: full = the 4-step template (~400 tokens); short = its cross-image and localisation steps;
    # brief = the localisation step only (~80 tokens). See docs/demo.md.
    reasoning: str = "brief"
    # replay: single-image referring rows of the pretraining's kind mixed into the SFT set (mirg.pretrain.replay),
    # so SFT on a few hundred trajectories keeps the base's grounding; 0 = none. Only from a pretrained base.
    sft_replay: int = 0
    # images per replay row, [min, max]: above 1, pretraining's multi-image referring samples (the named object in
    # one image, the answer names it; teaches reading a box off Image 2 or 3; docs/pretraining.md, round eleven)
    sft_replay_images: list[int] = field(default_factory=lambda: [1, 1])
    # SFT (docs/training.md: batch 8, lr 3e-3)
    sft_steps: int = 500  # from the random tiny model: ~300 for a mostly well-formed answer (docs/demo.md)
    sft_batch_size: int = 8
    # None: by the base (LEARNING_RATES): the random tiny model's 3e-3, a pretrained base's gentler 5e-4
    sft_learning_rate: float | None = None
    # GRPO (docs/training.md: lr 3e-4, temperature 0.8, beta 0, 8 prompts x 4 generations per step; 4 prompts
    # per step was too noisy for the reward to rise)
    rl_steps: int = 100
    rl_prompts_per_step: int = 8
    num_generations: int = 4
    rl_learning_rate: float | None = None  # None: 3e-4 from a random base, 3e-5 from a pretrained one
    temperature: float = 0.8
    max_completion_length: int = 128
    # evaluation (greedy) and report
    eval_batch_size: int = 16
    eval_max_new_tokens: int = 160
    gallery_per_kind: int = 4
    # --ablation: training seeds seed, seed+1, ... on the same data
    ablation_seeds: int = 2

    def validate(self) -> DemoSettings:
        if self.reasoning not in REASONING:
            raise MirgError(f"demo: reasoning must be one of {', '.join(REASONING)}, got {self.reasoning!r}")
        if len(self.images) != 2 or not 2 <= self.images[0] <= self.images[1]:
            raise MirgError(f"demo: images must be [min, max] with 2 <= min <= max, got {self.images}")
        if self.sft_replay < 0:
            raise MirgError(f"demo: sft_replay must be >= 0, got {self.sft_replay}")
        lo_hi = self.sft_replay_images
        if len(lo_hi) != 2 or not 1 <= lo_hi[0] <= lo_hi[1] <= 6:
            raise MirgError(
                f"demo: sft_replay_images must be [min, max] with 1 <= min <= max <= 6, got {lo_hi}"
            )
        for name in ("train_per_task", "test_per_task", "sft_steps", "rl_steps", "rl_prompts_per_step",
                     "num_generations", "eval_batch_size", "ablation_seeds"):  # fmt: skip
            if getattr(self, name) < 1:
                raise MirgError(f"demo: {name} must be >= 1, got {getattr(self, name)}")
        return self

    def for_base(self, base: Path | None) -> DemoSettings:
        """These settings with what was left at None filled in for ``base`` (None: the random tiny model): the
        learning rates of a random or a pretrained base, and the image size the base was pretrained on."""
        kind = "random" if base is None else "pretrained"
        fill: dict[str, Any] = {k: v for k, v in LEARNING_RATES[kind].items() if getattr(self, k) is None}
        if self.image_size is None:
            fill["image_size"] = (base_image_size(base) if base is not None else None) or 112
        return replace(self, **fill)

    def digest(self, *names: str) -> dict[str, Any]:
        d = asdict(self)
        return {n: d[n] for n in names}


def load_settings(path: str | Path | None = None, **overrides: Any) -> DemoSettings:
    """Defaults < YAML file < keyword overrides (None values are ignored). Unknown keys are an error."""
    data: dict[str, Any] = {}
    if path:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise MirgError(f"demo: config {p} not found")
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise MirgError(f"demo: {p} must hold one mapping of key: value")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(DemoSettings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MirgError(f"demo: unknown setting(s) {', '.join(unknown)}")
    return DemoSettings(**data).validate()


# ------------------------------------------------------------------------------------------- progress / ETA
def _fmt(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """One line per stage: ``[k/n] stage: done in 1m02s | elapsed 3m10s | ~4m left``.

    The estimate of what is left is each remaining stage's prior cost (seconds on 2 CPU cores), scaled by how
    fast the stages run so far went compared with their priors.
    """

    MIN_PRIOR = 20.0

    def __init__(self, plan: list[tuple[str, float]], stream: Any = None):
        self.plan = plan
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.done: dict[str, float] = {}
        self.measured_prior = 0.0
        self.measured_actual = 0.0

    def _left(self) -> float:
        ratio = self.measured_actual / self.measured_prior if self.measured_prior > 0 else 1.0
        return ratio * sum(p for name, p in self.plan if name not in self.done)

    def say(self, text: str) -> None:
        print(f"[demo] {text}", file=self.stream, flush=True)

    def begin(self, name: str) -> float:
        k = [n for n, _ in self.plan].index(name) + 1
        self.say(f"[{k}/{len(self.plan)}] {name}: running (elapsed {_fmt(self.elapsed())})")
        return time.perf_counter()

    def finish(self, name: str, t0: float | None, skipped: bool = False, note: str = "") -> None:
        k = [n for n, _ in self.plan].index(name) + 1
        seconds = 0.0 if t0 is None else time.perf_counter() - t0
        self.done[name] = seconds
        prior = dict(self.plan)[name]
        if not skipped and prior >= self.MIN_PRIOR:  # short stages say little about the speed of long ones
            self.measured_prior += prior
            self.measured_actual += seconds
        what = note or ("skipped (already done)" if skipped else f"done in {_fmt(seconds)}")
        self.say(
            f"[{k}/{len(self.plan)}] {name}: {what} | elapsed {_fmt(self.elapsed())} | ~{_fmt(self._left())} left"
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


# ------------------------------------------------------------------------------------------------- stages
def _marker_ok(folder: Path, key: dict[str, Any], outputs: list[str]) -> bool:
    m = folder / MARKER
    if not m.is_file() or not all((folder / o).exists() for o in outputs):
        return False
    try:
        return json.loads(m.read_text(encoding="utf-8")).get("key") == _hash(key)
    except (OSError, ValueError):
        return False


def _hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_marker(
    folder: Path, key: dict[str, Any], seconds: float, extra: dict[str, Any] | None = None
) -> None:
    rec = {"key": _hash(key), "settings": key, "seconds": round(seconds, 2), **(extra or {})}
    (folder / MARKER).write_text(json.dumps(rec, indent=1, default=str) + "\n", encoding="utf-8")


def stage_seconds(folder: Path) -> float | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8")).get("seconds")
    except (OSError, ValueError):
        return None


def run_stage(
    progress: Progress | None,
    name: str,
    folder: Path,
    key: dict[str, Any],
    outputs: list[str],
    work: Callable[[], dict[str, Any] | None],
) -> bool:
    """Run ``work`` unless ``folder`` holds a matching marker; returns True when it ran."""
    if _marker_ok(folder, key, outputs):
        if progress:
            progress.finish(name, None, skipped=True)
        return False
    t0 = progress.begin(name) if progress else time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    extra = work()
    _write_marker(folder, key, time.perf_counter() - t0, extra)
    if progress:
        progress.finish(name, t0)
    return True


def synth_stage(folder: Path, s: DemoSettings, data_seed: int, n_per_task: int) -> None:
    from mirg.synth import SynthConfig, generate_dataset

    config = SynthConfig(image_size=s.image_size, images=(s.images[0], s.images[1]))
    generate_dataset(folder, n_per_task, seed=data_seed, tasks=s.tasks, config=config, overwrite=True,
                     progress=False)  # fmt: skip


def shorten(reasoning: str, mode: str) -> str:
    """The template reasoning cut to its last steps (steps are lines; the last is the localisation)."""
    lines = [ln for ln in reasoning.strip().split("\n") if ln.strip()]
    if mode == "full" or len(lines) <= 1:
        return reasoning.strip()
    return "\n".join(lines[-2:] if mode == "short" else lines[-1:])


_THINK = re.compile(r"<think>(.*?)</think>", re.S)


def trajectories_stage(
    folder: Path,
    samples: Path,
    model_dir: Path,
    mode: str,
    seed: int,
    replay: int = 0,
    image_size: int = 224,
    replay_images: tuple[int, int] = (1, 1),
) -> dict[str, Any]:
    """``mirg trajectories`` (template) cut to ``mode``, plus ``replay`` single-image rows in ``folder/replay``."""
    from mirg.cli import main as cli_main

    code = cli_main(["trajectories", "--data", str(samples), "--out", str(folder), "--mode", "template",
                     "--model", str(model_dir), "--seed", str(seed), "--no-progress"])  # fmt: skip
    if code:
        raise MirgError(f"demo: mirg trajectories failed (exit {code})")
    path = folder / "trajectories.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not records:
        raise MirgError("demo: no trajectories were written")
    if mode != "full":
        for rec in records:
            for msg in rec["messages"]:
                if msg["role"] != "assistant":
                    continue
                parts = msg["content"] if isinstance(msg["content"], list) else None
                text = parts[0]["text"] if parts else msg["content"]
                text = _THINK.sub(lambda m: f"<think>{shorten(m.group(1), mode)}</think>", text, count=1)
                if parts:
                    parts[0]["text"] = text
                else:
                    msg["content"] = text
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    words = [
        len(m.group(1).split()) for r in records for m in [_THINK.search(json.dumps(r["messages"][-1]))] if m
    ]
    mean_words = round(sum(words) / max(1, len(words)), 1)
    log.info("demo trajectories: %d, reasoning %r, mean %.1f words", len(records), mode, mean_words)
    if replay:
        from mirg.models.loading import load_processor
        from mirg.pretrain.replay import write_replay

        grounding = base_grounding(model_dir) or {}
        write_replay(folder / "replay", replay, seed=seed, image_size=image_size,
                     max_objects=int(grounding.get("max_objects") or 5),
                     processor=load_processor(model_dir), images=replay_images)  # fmt: skip
        log.info(
            "demo replay: %d referring rows of %d-%d images in %s", replay, *replay_images, folder / "replay"
        )
    return {"trajectories": len(records), "reasoning": mode, "mean_reasoning_words": mean_words,
            "replay": replay}  # fmt: skip


def _overrides(args: dict[str, Any]) -> list[str]:
    return [x for k, v in args.items() for x in (f"--{k}", str(v).lower() if isinstance(v, bool) else str(v))]


def _config(stage: str) -> Path:
    """The tiny model's stage config the demo starts from (package data; the demo's settings override it)."""
    p = PACKAGE / "configs" / "tiny" / f"{stage}.yaml"
    if not p.is_file():  # a broken install: the stage would silently run on other defaults
        raise MirgError(f"demo: {p} is missing; reinstall mirg (it ships with the package)")
    return p


def sft_stage(
    folder: Path, model: Path, traj: Path, s: DemoSettings, seed: int, replay: Path | None = None
) -> dict[str, Any]:
    from mirg.training.config import parse_stage_config
    from mirg.training.sft import train_sft
    from mirg.training.stage_cli import stage_types

    types, defaults = stage_types("sft")
    args = {
        "model_name_or_path": model, "train_file": traj, "output_dir": folder, "max_steps": s.sft_steps,
        "per_device_train_batch_size": s.sft_batch_size, "learning_rate": s.sft_learning_rate,
        "lr_scheduler_type": "cosine", "warmup_steps": min(10, s.sft_steps // 10), "seed": seed,
        "logging_steps": 1, "save_strategy": "no", "disable_tqdm": True, "report_to": "none",
    }  # fmt: skip
    if replay is not None:
        args["replay_file"] = replay
    parsed, notes = parse_stage_config(types, _config("sft"), _overrides(args), defaults=defaults)
    result = train_sft(*parsed, notes=notes)
    return {"global_step": result.global_step}


def rl_stage(
    folder: Path, model: Path, samples: Path, s: DemoSettings, seed: int, reward: dict[str, Any]
) -> dict[str, Any]:
    from mirg.training.config import parse_stage_config
    from mirg.training.rl import train_rl
    from mirg.training.stage_cli import stage_types

    types, defaults = stage_types("rl")
    args = {
        "model_name_or_path": model, "train_file": samples, "output_dir": folder, "max_steps": s.rl_steps,
        "per_device_train_batch_size": s.rl_prompts_per_step * s.num_generations,
        "num_generations": s.num_generations, "max_completion_length": s.max_completion_length,
        "learning_rate": s.rl_learning_rate, "temperature": s.temperature, "beta": 0.0,
        "lr_scheduler_type": "constant", "seed": seed, "logging_steps": 1, "save_strategy": "no",
        "disable_tqdm": True, "report_to": "none", **reward,
    }  # fmt: skip
    parsed, notes = parse_stage_config(types, _config("rl"), _overrides(args), defaults=defaults)
    result = train_rl(*parsed, notes=notes)
    return {"global_step": result.global_step}


def eval_stage(folder: Path, model: Path, samples: Path, s: DemoSettings) -> dict[str, Any]:
    from mirg.evaluation.runner import evaluate

    metrics = evaluate(model, samples, folder, batch_size=s.eval_batch_size,
                       max_new_tokens=s.eval_max_new_tokens, progress=False)  # fmt: skip
    return {"average": metrics.get("average", {})}


# ----------------------------------------------------------------------------------------------- the run
def resolve_base(base: str | Path | None) -> tuple[Path | None, str]:
    """(pretrained base folder or None, where it came from)."""
    if base:
        p = Path(base)
        if not (p / "config.json").is_file():
            raise MirgError(f"demo: --base {p} is not a checkpoint folder (no config.json)")
        return p, "--base"
    if (SHIPPED_BASE / "config.json").is_file():
        return SHIPPED_BASE, "shipped (assets/tiny_base)"
    return None, "none"


def base_metrics(base: Path) -> dict[str, Any]:
    """The ``metrics.json`` a ``mirg pretrain`` checkpoint carries ({} when it has none)."""
    from mirg.pretrain.card import read_metrics

    return read_metrics(base, f"demo: base {base}") or {}


def base_image_size(base: Path) -> int | None:
    """The image size a ``mirg pretrain`` checkpoint was trained on, or None when it does not say."""
    size = (base_metrics(base).get("config") or {}).get("image_size")
    return int(size) if size else None


def base_grounding(base: Path | None) -> dict[str, Any] | None:
    """A pretrained base's held-out single-image referring Acc@0.5 (short prompt, a fraction) and the most
    objects per scene it was measured on, when its metrics record them."""
    if base is None:
        return None
    metrics = base_metrics(base)
    acc = (metrics.get("refer_short_prompt") or {}).get("acc@0.5")
    if acc is None:
        return None
    return {"acc@0.5": float(acc), "max_objects": (metrics.get("config") or {}).get("max_objects") or 5}


def _text_flops_per_token(text: dict[str, Any]) -> float:
    """Multiply-adds per token of a text config's decoder layers (attention projections and MLP)."""
    h, heads = text["hidden_size"], text["num_attention_heads"]
    kv = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or h // heads
    per_layer = 2 * h * heads * head_dim + 2 * h * kv * head_dim + 3 * h * text["intermediate_size"]
    return float(text["num_hidden_layers"] * per_layer)


def model_cost_scale(base_dir: Path | None, image_size: int | None = None) -> float:
    """How much slower than the random tiny model at 112 px a demo step of ``base_dir`` at ``image_size`` is
    expected to be on 2 CPU cores. At these sizes a step is bound by per-layer overhead more than arithmetic:
    the round-five base (1.5x the tiny model's text layers, 2x its text compute per token) took 1.4x as long,
    and the round-fourteen base ``W`` (three layers, 8x the text compute) ran the default demo in 12 m 41 s on
    2 idle cores, where scaling by text compute had said about 45 min (docs/demo.md). So the scale follows
    the text layer count, times sqrt(image_size / 112) for larger images (224 px: round twelve's base took
    2.1x the tiny model's SFT step time), and follows text compute only past 8x the tiny model's (a real
    checkpoint on a CPU). The estimate is rescaled at run time by the measured speed of the long stages."""
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


def _priors(s: DemoSettings, scale: float = 1.0) -> dict[str, float]:
    """Rough seconds per stage on 2 idle CPU cores for the random tiny model, model stages times ``scale``
    (the estimate is rescaled at run time by the measured speed of the long stages)."""
    n_tasks = len(s.tasks) if s.tasks else 11
    n_test = s.test_per_task * n_tasks
    tok = {"full": 420, "short": 200, "brief": 110}[s.reasoning]
    rl_step = 1.6 * s.rl_prompts_per_step * s.num_generations / 32 * s.max_completion_length / 128
    return {  # calibrated on the default run of docs/demo.md (SFT 0.27 s/step, GRPO 1.6 s/step)
        "data": 0.005 * (s.train_per_task + s.test_per_task) * n_tasks + 1,
        "trajectories": 0.005 * s.train_per_task * n_tasks + 1,
        "sft": scale * s.sft_steps * 0.27 * s.sft_batch_size / 8 * tok / 110 + 5,
        "rl": scale * s.rl_steps * rl_step + 5,
        "eval": scale * 0.0002 * n_test * s.eval_max_new_tokens + 2,
    }


def plan_stages(s: DemoSettings, ablation: bool, scale: float = 1.0) -> list[tuple[str, float]]:
    p = _priors(s, scale)
    plan = [("data", p["data"]), ("base model", 3.0), ("trajectories", p["trajectories"]), ("sft", p["sft"]),
            ("rl", p["rl"]), ("eval base", p["eval"]), ("eval sft", p["eval"]), ("eval sft+rl", p["eval"])]  # fmt: skip
    if ablation:
        for seed in ablation_seeds(s):
            if seed != s.seed:
                plan += [
                    (f"ablation seed {seed}: sft", p["sft"]),
                    (f"ablation seed {seed}: rl sft_rl_dual", p["rl"]),
                    (f"ablation seed {seed}: eval sft", p["eval"]),
                    (f"ablation seed {seed}: eval sft_rl_dual", p["eval"]),
                ]  # the order they run in
            for v in ("rl_only", "sft_rl_object"):
                plan += [
                    (f"ablation seed {seed}: rl {v}", p["rl"]),
                    (f"ablation seed {seed}: eval {v}", p["eval"]),
                ]
    plan.append(("report", 5.0))
    return plan


def ablation_seeds(s: DemoSettings) -> list[int]:
    return [s.seed + k for k in range(s.ablation_seeds)]


def _model_id(folder: Path) -> str:
    """A fingerprint of a checkpoint folder (so a stage reruns when its input model changed)."""
    h = hashlib.sha256()
    for p in sorted(folder.glob("*")):
        if p.is_file() and p.suffix in (".json", ".safetensors") and p.name != MARKER:
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def run_demo(
    out: str | Path,
    settings: DemoSettings | None = None,
    *,
    base: str | Path | None = None,
    ablation: bool = False,
    stream: Any = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the demo into ``out``; returns the run summary (also ``out/demo.json``)."""
    from mirg.training.stage_cli import setup_logging

    s = (settings or DemoSettings()).validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    setup_logging()
    base_dir, base_source = resolve_base(base)
    s = s.for_base(base_dir)
    progress = Progress(plan_stages(s, ablation, model_cost_scale(base_dir, s.image_size)), stream)
    t_start = time.perf_counter()

    warning = None
    if base_dir is None:
        warning = NO_BASE_WARNING
        progress.say(
            f"WARNING: {NO_BASE_WARNING} (build assets/tiny_base with `mirg pretrain` or pass --base)"
        )

    progress.say(f"settings: {json.dumps(asdict(s))}")
    progress.say(f"{len(progress.plan)} stages, ~{_fmt(progress._left())} estimated for 2 CPU cores")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    progress.say(f"device: {device}; base model: {base_dir or 'random tiny model'} ({base_source})")

    data_key = s.digest("seed", "tasks", "image_size", "images")
    train, test = out / "data" / "train", out / "data" / "test"
    train_seed, test_seed = 1000 * s.seed + 1, 1000 * s.seed + 2  # disjoint scenes

    def data_work() -> dict[str, Any]:
        synth_stage(train, s, train_seed, s.train_per_task)
        synth_stage(test, s, test_seed, s.test_per_task)
        return {"train_seed": train_seed, "test_seed": test_seed}

    run_stage(progress, "data", out / "data", {**data_key, "n": [s.train_per_task, s.test_per_task]},
              ["train/samples.jsonl", "test/samples.jsonl"], data_work)  # fmt: skip
    train_samples, test_samples = train / "samples.jsonl", test / "samples.jsonl"

    if base_dir is None:
        from mirg.models.tiny import build_tiny_model

        base_dir = out / "base"

        def base_work() -> None:
            shutil.rmtree(base_dir)
            build_tiny_model(base_dir, size="tiny", seed=s.seed)

        run_stage(progress, "base model", base_dir, {"seed": s.seed, "kind": "random tiny"}, ["config.json"],
                  base_work)  # fmt: skip
    else:
        progress.finish("base model", None, skipped=True, note=f"pretrained base {base_dir}")
    base_id = _model_id(base_dir)

    traj = out / "traj"
    replay = s.sft_replay if warning is None else 0  # a random base has no perception to keep
    if s.sft_replay and not replay:
        progress.say("sft_replay ignored: the random tiny model has no grounding to keep")
    run_stage(progress, "trajectories", traj, {"data": data_key, "n": s.train_per_task, "base": base_id,
              "reasoning": s.reasoning, "replay": replay,
              **({"replay_images": s.sft_replay_images} if replay else {})}, ["trajectories.jsonl"],
              lambda: trajectories_stage(traj, train_samples, base_dir, s.reasoning, s.seed, replay,
                                         s.image_size or 224, tuple(s.sft_replay_images)))  # fmt: skip
    replay_file = traj / "replay" / "replay.jsonl" if replay else None

    sft_key = {"traj": _hash_file(traj / "trajectories.jsonl"), "base": base_id,
               "replay": _hash_file(replay_file) if replay_file else "",
               **s.digest("sft_steps", "sft_batch_size", "sft_learning_rate")}  # fmt: skip
    rl_key = s.digest("rl_steps", "rl_prompts_per_step", "num_generations", "rl_learning_rate", "temperature",
                      "max_completion_length", "train_per_task") | {"data": data_key}  # fmt: skip
    eval_key = {"data": data_key, **s.digest("test_per_task", "eval_max_new_tokens")}

    def train_pair(root: Path, seed: int, label: str) -> tuple[Path, Path]:
        sft_dir, rl_dir = root / "sft", root / "rl"
        run_stage(progress, f"{label}sft", sft_dir, {**sft_key, "seed": seed}, ["model.safetensors"],
                  lambda: sft_stage(sft_dir, base_dir, traj / "trajectories.jsonl", s, seed, replay_file))  # fmt: skip
        dual = VARIANTS["sft_rl_dual"][2]
        assert dual is not None
        run_stage(progress, f"{label}rl" + (" sft_rl_dual" if label else ""), rl_dir,
                  {**rl_key, "seed": seed, "from": _model_id(sft_dir), "reward": dual}, ["model.safetensors"],
                  lambda: rl_stage(rl_dir, sft_dir, train_samples, s, seed, dual))  # fmt: skip
        return sft_dir, rl_dir

    def eval_model(name: str, folder: Path, model: Path) -> None:
        run_stage(progress, name, folder, {**eval_key, "model": _model_id(model)}, ["metrics.json"],
                  lambda: eval_stage(folder, model, test_samples, s))  # fmt: skip

    sft_dir, rl_dir = train_pair(out, s.seed, "")
    eval_model("eval base", out / "eval" / "base", base_dir)
    eval_model("eval sft", out / "eval" / "sft", sft_dir)
    eval_model("eval sft+rl", out / "eval" / "rl", rl_dir)

    ablation_results: dict[str, Any] | None = None
    if ablation:
        ablation_results = {"seeds": ablation_seeds(s), "variants": {}}
        per_variant: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for seed in ablation_seeds(s):
            root = out / "ablation" / f"seed-{seed}"
            label = f"ablation seed {seed}: "
            if seed == s.seed:
                seed_sft, evals = (
                    sft_dir,
                    {"sft_only": out / "eval" / "sft", "sft_rl_dual": out / "eval" / "rl"},
                )
            else:
                seed_sft, seed_rl = train_pair(root, seed, label)
                evals = {"sft_only": root / "eval" / "sft_only", "sft_rl_dual": root / "eval" / "sft_rl_dual"}
                eval_model(f"{label}eval sft", evals["sft_only"], seed_sft)
                eval_model(f"{label}eval sft_rl_dual", evals["sft_rl_dual"], seed_rl)
            for v in ("rl_only", "sft_rl_object"):
                _, from_sft, reward = VARIANTS[v]
                assert reward is not None
                start = seed_sft if from_sft else base_dir
                folder = root / v
                run_stage(progress, f"{label}rl {v}", folder,
                          {**rl_key, "seed": seed, "from": _model_id(start), "reward": reward},
                          ["model.safetensors"],
                          lambda folder=folder, start=start, reward=reward, seed=seed: rl_stage(
                              folder, start, train_samples, s, seed, reward))  # fmt: skip
                evals[v] = root / "eval" / v
                eval_model(f"{label}eval {v}", evals[v], folder)
            for v in VARIANTS:
                m = json.loads((evals[v] / "metrics.json").read_text(encoding="utf-8"))
                per_variant[v].append({"seed": seed, "average": m["average"], "eval_dir": str(evals[v])})
        for v, (label, _, _) in VARIANTS.items():
            ablation_results["variants"][v] = {"label": label, "runs": per_variant[v]}
        (out / "ablation").mkdir(exist_ok=True)
        (out / "ablation" / "results.json").write_text(json.dumps(ablation_results, indent=1) + "\n")

    summary = {
        "settings": asdict(s),
        "base": {
            "path": str(base_dir),
            "source": base_source,
            "pretrained": warning is None,
            "single_image_refer": base_grounding(base_dir if warning is None else None),
        },
        "warning": warning,
        "device": device,
        "ablation": ablation,
        "command": command,
        "stage_seconds": {
            "data": stage_seconds(out / "data"),
            "trajectories": stage_seconds(traj),
            "sft": stage_seconds(sft_dir),
            "rl": stage_seconds(rl_dir),
            "eval base": stage_seconds(out / "eval" / "base"),
            "eval sft": stage_seconds(out / "eval" / "sft"),
            "eval sft+rl": stage_seconds(out / "eval" / "rl"),
        },
        "this_run_seconds": round(time.perf_counter() - t_start, 1),
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")

    from mirg.demo.report import write_report

    t0 = progress.begin("report")
    paths = write_report(out, summary, ablation_results)
    progress.finish("report", t0)
    progress.say(f"wrote {paths['md']} and {paths['html']} in {_fmt(progress.elapsed())}")
    summary["report"] = {k: str(v) for k, v in paths.items()}
    return summary


def _hash_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""
