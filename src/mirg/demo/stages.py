"""The demo's stages: each writes one folder and a ``stage.json`` marker last; a rerun skips a stage whose marker
matches its settings and inputs, and redoes one whose settings changed from scratch. Every stage calls the same
Python API as its ``mirg`` verb."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mirg.demo.progress import Progress
from mirg.demo.settings import PACKAGE, DemoSettings
from mirg.errors import MirgError
from mirg.outputs import file_fingerprint

log = logging.getLogger("mirg.demo")
MARKER = "stage.json"


# ------------------------------------------------------------------------------------------------- markers
def fingerprint(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_id(folder: Path) -> str:
    """A fingerprint of a checkpoint folder (so a stage reruns when its input model changed)."""
    h = hashlib.sha256()
    for p in sorted(folder.glob("*")):
        if p.is_file() and p.suffix in (".json", ".safetensors") and p.name != MARKER:
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def read_marker(folder: Path) -> dict[str, Any]:
    """A stage folder's marker ({} when it has none, or an unreadable one)."""
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_stage(
    progress: Progress,
    name: str,
    folder: Path,
    key: dict[str, Any],
    outputs: list[str],
    work: Callable[[], dict[str, Any] | None],
) -> bool:
    """Run ``work`` unless ``folder`` holds a matching marker; returns True when it ran."""
    if all((folder / o).exists() for o in outputs) and read_marker(folder).get("key") == fingerprint(key):
        progress.finish(name, None, skipped=True)
        return False
    t0 = progress.begin(name)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    extra = work() or {}
    rec = {"key": fingerprint(key), "settings": key, "seconds": round(time.perf_counter() - t0, 2), **extra}
    (folder / MARKER).write_text(json.dumps(rec, indent=1, default=str) + "\n", encoding="utf-8")
    progress.finish(name, t0)
    return True


# -------------------------------------------------------------------------------------------------- stages
def synth_stage(folder: Path, s: DemoSettings, data_seed: int, n_per_task: int) -> None:
    from mirg.synth import SynthConfig, generate_dataset

    extra = {"distractors": (s.distractors[0], s.distractors[1])} if s.distractors else {}
    config = SynthConfig(image_size=s.image_size, images=(s.images[0], s.images[1]), **extra)
    generate_dataset(folder, n_per_task, seed=data_seed, tasks=s.tasks, config=config, overwrite=True,
                     progress=False)  # fmt: skip


def trajectories_stage(folder: Path, samples: Path, model_dir: Path, mode: str, seed: int) -> dict[str, Any]:
    """Template trajectories with ``mode`` reasoning."""
    from mirg.trajectories import write_template_trajectories

    written = write_template_trajectories(samples, folder, model_dir, seed=seed, reasoning=mode)
    n, words = written["trajectories"], written["mean_reasoning_words"]
    log.info("demo trajectories: %d, reasoning %r, mean %.1f words", n, mode, words)
    return {"trajectories": n, "reasoning": mode, "mean_reasoning_words": words}


def stage_config(stage: str) -> Path:
    """The tiny model's stage config the demo starts from (package data; the demo's settings override it)."""
    p = PACKAGE / "configs" / "tiny" / f"{stage}.yaml"
    if not p.is_file():  # a broken install: the stage would silently run on other defaults
        raise MirgError(f"demo: {p} is missing; reinstall mirg (it ships with the package)")
    return p


def _train(stage: str, model: Path, data: Path, folder: Path, seed: int, **args: Any) -> dict[str, Any]:
    """Run ``mirg sft`` / ``mirg rl`` in-process on the tiny stage config: ``model`` trained on ``data`` into
    ``folder``, with ``args`` as overrides; a log line per step, no checkpoints, progress bars or trackers."""
    from mirg.training.config import parse_stage_config
    from mirg.training.stage_cli import stage_types

    args |= {"model_name_or_path": model, "train_file": data, "output_dir": folder, "seed": seed}
    args |= {"logging_steps": 1, "save_strategy": "no", "disable_tqdm": True, "report_to": "none"}
    types, defaults = stage_types(stage)
    words = [
        x for k, v in args.items() for x in (f"--{k}", str(v).lower() if isinstance(v, bool) else str(v))
    ]
    parsed, notes = parse_stage_config(types, stage_config(stage), words, defaults=defaults)
    if stage == "sft":
        from mirg.training.sft import train_sft as train
    else:
        from mirg.training.rl import train_rl as train
    return {"global_step": train(*parsed, notes=notes).global_step}


def sft_stage(folder: Path, model: Path, traj: Path, s: DemoSettings, seed: int) -> dict[str, Any]:
    args = {
        "max_steps": s.sft_steps, "per_device_train_batch_size": s.sft_batch_size,
        "learning_rate": s.sft_learning_rate, "lr_scheduler_type": "cosine",
        "warmup_steps": min(10, s.sft_steps // 10), "freeze_vision": s.freeze_vision,
    }  # fmt: skip
    return _train("sft", model, traj, folder, seed, **args)


def rl_stage(
    folder: Path, model: Path, samples: Path, s: DemoSettings, seed: int, reward: dict[str, Any]
) -> dict[str, Any]:
    args = {
        "max_steps": s.rl_steps, "per_device_train_batch_size": s.rl_prompts_per_step * s.num_generations,
        "num_generations": s.num_generations, "max_completion_length": s.max_completion_length,
        "learning_rate": s.rl_learning_rate, "temperature": s.temperature, "freeze_vision": s.freeze_vision,
        **reward, **{k: v for k, v in s.rl_schedule().items() if k != "warmup_steps" or v},
    }  # fmt: skip
    return _train("rl", model, samples, folder, seed, **args)


def split_overlap(*folders: Path) -> int:
    """How many images of the MIG-Synth splits in ``folders`` have the same pixels as an image of an earlier
    split (0: the splits share no scene), by a content hash of each image file."""
    seen: set[str] = set()
    shared = 0
    for folder in folders:
        mine = {file_fingerprint(p) for p in sorted((folder / "images").rglob("*.png"))}
        shared += len(mine & seen)
        seen |= mine
    return shared


def eval_stage(folder: Path, model: Path, samples: Path, s: DemoSettings) -> dict[str, Any]:
    from mirg.evaluation.runner import evaluate

    metrics = evaluate(model, samples, folder, batch_size=s.eval_batch_size,
                       max_new_tokens=s.eval_max_new_tokens, progress=False)  # fmt: skip
    return {"average": metrics.get("average", {})}


def metrics_average(folder: Path) -> dict[str, Any]:
    """The average metrics of an evaluation stage's ``metrics.json``."""
    return json.loads((folder / "metrics.json").read_text(encoding="utf-8"))["average"]
