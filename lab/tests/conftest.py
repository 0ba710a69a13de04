"""Fixtures of the lab's tests (the shared ones are in the repository's root conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def pretrain_args() -> Callable[..., list[str]]:
    """``python -m lab.tinybase`` words for a 3-step run of the tiny preset in ``out`` (no vision stage, no
    periodic or MIG-Synth evaluation, 3 held-out samples), plus ``extra`` command-line words."""

    def words(out: Path, *extra: str) -> list[str]:
        argv = ["--out", str(out), "--size", "tiny", "--steps", "3", "--batch-size", "2", "--warmup", "1",
                "--eval-every", "0", "--final-eval-samples", "3", "--migsynth-per-task", "0", "--log-every", "1",
                "--threads", "1", "--vision-steps", "0"]  # fmt: skip
        return [*argv, *extra]

    return words
