"""What ``mirg sft`` and ``mirg rl`` share around a training run: its result, resuming, and the notes logged
at its start."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirg.errors import MirgError

log = logging.getLogger("mirg.training")


@dataclass
class TrainResult:
    output_dir: str
    log_history: list[dict[str, Any]]
    global_step: int


def resume_checkpoint(resume: Any, output_dir: str) -> Any:
    """``resume`` as ``Trainer.train`` takes it: None, or a checkpoint folder (True = the last one in
    ``output_dir``); MirgError when there is nothing to resume from."""
    if resume in (None, False, ""):
        return None
    if resume is True or resume == "last":
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is None:
            raise MirgError(f"--resume: no checkpoint-* folder in {output_dir}")
        return last
    if not Path(resume).is_dir():
        raise MirgError(f"--resume: checkpoint folder not found: {resume}")
    if not (Path(resume) / "trainer_state.json").is_file():
        raise MirgError(f"--resume {resume}: not a training checkpoint (no trainer_state.json); give a checkpoint-* "
                        "folder or --resume last")  # fmt: skip
    return str(resume)


def log_notes(notes: list[str]) -> None:
    for note in notes:
        log.info(note)
