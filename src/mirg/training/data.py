"""Datasets for the two stages, in the shapes TRL's trainers expect.

* SFT (:func:`load_trajectories`): one row per trajectory, ``messages`` (the conversation from
  :func:`mirg.prompting.build_messages` with the assistant turn) and ``images`` (PIL images, order =
  Image-1..N, decoded lazily by ``datasets.Image``). SFTTrainer fills the ``{"type": "image"}``
  placeholders in order and, with ``assistant_only_loss``, trains on the assistant turn only.
* RL (:func:`rl_dataset`): one row per Sample, ``prompt`` (the user turn from ``build_messages``, no
  answer), ``images``, and the columns the reward functions read: ``target_image`` (1-based),
  ``target_box`` (normalized [0, 1] of the target image's original size) and ``resized_sizes``
  ([[w, h], ...], the processor-resized size of every image, which Qwen2.5-VL's pixel answers refer to) and
  ``dialect`` (so :func:`mirg.rewards.format_reward` and its siblings work from TRL's own CLI too).

Every image path is checked before training starts; a missing one is an ImageError naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mirg.errors import DataError, MirgError
from mirg.images import check_images_exist, image_size, resolve

ROLES = ("system", "user", "assistant")


def _normalize_content(content: Any, path: Path, line: int) -> list[dict[str, Any]]:
    """Content as a list of ``{"type", "text"}`` parts (one Arrow schema for every row)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise DataError("message content must be a string or a list of parts", path, line, "messages")
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "image":
            parts.append({"type": "image", "text": None})
        else:
            raise DataError(f"unsupported content part {part!r}", path, line, "messages")
    return parts


def _normalize_messages(messages: Any, path: Path, line: int) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise DataError("must be a non-empty list of messages", path, line, "messages")
    out = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise DataError(f"each message needs a role in {ROLES}", path, line, "messages")
        out.append({"role": m["role"], "content": _normalize_content(m.get("content", ""), path, line)})
    if out[-1]["role"] != "assistant":
        raise DataError("the last message must be the assistant's answer", path, line, "messages")
    return out


def trajectory_records(path: str | Path, max_samples: int | None = None) -> list[dict[str, Any]]:
    """Validated SFT rows (``id``, ``messages``, ``images`` as absolute paths) from a trajectories JSONL."""
    from mirg.jsonio import iter_jsonl_records, require_kind

    path = Path(path)
    if not path.is_file():
        raise MirgError(f"trajectory file not found: {path}")
    require_kind(path, ("trajectories",))
    rows: list[dict[str, Any]] = []
    for line, rec in iter_jsonl_records(path):
        if max_samples is not None and len(rows) >= max_samples:
            break
        if not isinstance(rec, dict):
            raise DataError("each line must be a JSON object", path, line)
        messages = _normalize_messages(rec.get("messages"), path, line)
        images = rec.get("images") or []
        if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
            raise DataError("must be a list of image paths", path, line, "images")
        n = sum(p["type"] == "image" for m in messages for p in m["content"])
        if n != len(images):
            raise DataError(
                f"{n} image placeholders in messages but {len(images)} images", path, line, "images"
            )
        rows.append(
            {
                "id": str(rec.get("id", f"line{line}")),
                "messages": messages,
                "images": [str(resolve(p, path.parent)) for p in images],
            }
        )
    if not rows:
        raise MirgError(f"{path}: no trajectories")
    check_images_exist([p for r in rows for p in r["images"]])
    return rows


def _dataset(rows: list[dict[str, Any]]) -> Any:
    """``rows`` as a ``datasets.Dataset``, its ``images`` paths decoded to PIL images on access."""
    import datasets

    return datasets.Dataset.from_list(rows).cast_column("images", datasets.Sequence(datasets.Image()))


def load_trajectories(path: str | Path, max_samples: int | None = None) -> Any:
    """The SFT ``datasets.Dataset`` (``id``, ``messages``, ``images`` decoded to PIL on access)."""
    return _dataset(trajectory_records(path, max_samples))


def _prompt(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"role": m["role"], "content": _normalize_content(m["content"], Path("<prompt>"), 0)}
        for m in messages
    ]


def rl_dataset(
    data_file: str | Path,
    dialect: str,
    processor: Any,
    image_root: str | Path | None = None,
    max_samples: int | None = None,
) -> tuple[Any, int]:
    """The GRPO ``datasets.Dataset`` from a Sample JSONL or MIG-Bench JSON, and how many samples were skipped
    for lacking a target. Image paths are relative to ``image_root`` (default: the data file's folder)."""
    from mirg.migbench import load_samples
    from mirg.prompting import build_messages, resized_size

    data_file = Path(data_file)
    if not data_file.is_file():
        raise MirgError(f"training data not found: {data_file}")
    samples = load_samples(data_file)[:max_samples]
    root = Path(image_root) if image_root is not None else data_file.parent
    check_images_exist([p for s in samples for p in s.images], root)
    rows = []
    for s in samples:
        if s.target_image is None or s.target_box is None:
            continue
        paths = [str(resolve(p, root)) for p in s.images]
        rows.append(
            {
                "id": s.id,
                "task": s.task,
                "prompt": _prompt(build_messages(s, dialect)),
                "images": paths,
                "target_image": int(s.target_image),
                "target_box": [float(v) for v in s.target_box],
                "resized_sizes": [list(resized_size(image_size(p), processor)) for p in paths],
                "dialect": dialect,
            }
        )
    if not rows:
        raise MirgError(f"{data_file}: no samples with a target image and box to train on")
    return _dataset(rows), len(samples) - len(rows)
