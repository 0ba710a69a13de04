"""What a base checkpoint's card says about it: the ``metrics.json`` a tiny-base pretraining run writes next to
its weights (held-out grounding figures, the image size it was trained on, the commands behind it). The card
writer and the runs themselves are in the repository's ``lab/tinybase`` (outside the package)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mirg.errors import MirgError


def read_card_metrics(checkpoint: str | Path, who: str) -> dict[str, Any] | None:
    """The ``metrics.json`` a pretrained checkpoint carries, or None when it has none; ``who`` prefixes the
    error for an unreadable one (e.g. ``"--init DIR"``)."""
    path = Path(checkpoint) / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MirgError(f"{who}: {path} is not readable JSON ({e})") from e
    if not isinstance(metrics, dict):
        raise MirgError(f"{who}: {path} is not a metrics object")
    return metrics
