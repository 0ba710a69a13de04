"""``mirg score``: score predictions against MIG-Bench or Sample data."""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from pathlib import Path

from mirg.answers import DIALECTS, get_dialect
from mirg.boxes import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, smart_resize
from mirg.errors import MirgError
from mirg.images import image_size, resolve
from mirg.migbench import load_samples
from mirg.outputs import check_output_file
from mirg.predictions import load_predictions
from mirg.sample import Sample
from mirg.scoring import PROTOCOLS, Y_RESCALES, aggregate, format_markdown, format_table, score_items


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bench", required=True, type=Path, help="MIG-Bench JSON (either release) or Sample JSONL"
    )
    p.add_argument(
        "--predictions",
        required=True,
        type=Path,
        help="mirg predictions JSONL (or the mirg eval folder holding it), or a third-party results JSON file / "
        "folder (the format of the result files released with MIG-Bench)",
    )
    p.add_argument("--protocol", choices=PROTOCOLS, default="mirg", help="official MIG-Bench scoring, or mirg's "
                   "coordinate- and image-aware scoring (default: mirg)")  # fmt: skip
    p.add_argument("--y-rescale", choices=sorted(Y_RESCALES), default=None,
                   help="official protocol only: apply a model's post-hoc y rescale (migician)")  # fmt: skip
    p.add_argument("--dialect", choices=sorted(DIALECTS), default=None,
                   help="mirg protocol, raw-text predictions: how to read coordinates (qwen2_vl: 0-1000; "
                   "qwen2_5_vl: pixels of the resized image, needs --image-root)")  # fmt: skip
    p.add_argument(
        "--image-root", type=Path, default=None, help="folder the bench image paths are relative to"
    )
    p.add_argument(
        "--min-pixels", type=int, default=QWEN_MIN_PIXELS, help="processor min_pixels (qwen2_5_vl)"
    )
    p.add_argument(
        "--max-pixels", type=int, default=QWEN_MAX_PIXELS, help="processor max_pixels (qwen2_5_vl)"
    )
    p.add_argument("--missing", choices=("miss", "skip"), default="miss",
                   help="bench items without a prediction: count as misses (default) or leave out")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="write the metrics JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="write the metrics table (Markdown) here")
    p.add_argument("--items", type=Path, default=None, help="write per-item scores (JSONL) here")


def image_size_reader(root: Path | None, min_pixels: int, max_pixels: int):
    """(sample, image) -> processor-resized (width, height), reading only image headers."""

    @cache
    def resized(path: Path) -> tuple[int, int]:
        w, h = image_size(path)
        rh, rw = smart_resize(h, w, min_pixels=min_pixels, max_pixels=max_pixels)
        return rw, rh

    def size_of(sample: Sample, image: int) -> tuple[int, int]:
        return resized(resolve(sample.images[image - 1], root))

    return size_of


def run(args: argparse.Namespace) -> int:
    if args.y_rescale and args.protocol != "official":
        raise MirgError("--y-rescale applies to the official protocol only")
    if not 0 < args.min_pixels <= args.max_pixels:
        raise MirgError(
            f"--min-pixels/--max-pixels must satisfy 0 < min <= max, got {args.min_pixels}, {args.max_pixels}"
        )
    inputs = {"--bench": args.bench, "--predictions": args.predictions}
    outputs = {"--json": args.json, "--markdown": args.markdown, "--items": args.items}
    paths = [p for p in outputs.values() if p is not None]
    if len({str(p.resolve()) for p in paths}) != len(paths):
        raise MirgError("--json, --markdown and --items must name different files")
    for flag, path in outputs.items():
        if path is not None:
            check_output_file(path, flag, inputs)
    samples = load_samples(args.bench)
    predictions = load_predictions(args.predictions, samples)
    dialect = get_dialect(args.dialect) if args.dialect else None
    if args.protocol == "mirg" and dialect is None and any(not p.parsed for p in predictions):
        raise MirgError(
            "these predictions carry raw text only; pass --dialect qwen2_vl|qwen2_5_vl so the mirg protocol knows "
            "their coordinate system (or use --protocol official)"
        )
    size_of = None
    if dialect is not None and dialect.coords == "pixels":
        if args.image_root is None:
            raise MirgError("--dialect qwen2_5_vl answers in pixels of the resized image: pass --image-root")
        size_of = image_size_reader(args.image_root, args.min_pixels, args.max_pixels)
    # load_predictions refused ids not in the bench: score_items' KeyError cannot happen here
    items = score_items(
        samples,
        predictions,
        args.protocol,
        dialect=dialect,
        size_of=size_of,
        y_rescale=args.y_rescale,
        missing=args.missing,
    )
    options = {"y_rescale": args.y_rescale, "dialect": args.dialect, "missing": args.missing}
    metrics = aggregate(items, args.protocol, options)
    n_missing = len(samples) - len(predictions)  # their ids are unique and in the bench
    if n_missing:
        verb = "count as misses" if args.missing == "miss" else "are left out"
        print(
            f"mirg: warning: {n_missing} of {len(samples)} bench items have no prediction and {verb}",
            file=sys.stderr,
        )
    print(format_table(metrics))
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(format_markdown(metrics), encoding="utf-8")
    if args.items:
        with args.items.open("w", encoding="utf-8") as fh:
            for it in items:
                fh.write(json.dumps({"id": it.id, "task": it.task, "iou": it.iou, "image_correct": it.image_correct,
                                     "pred_image": it.pred_image, "pred_box": it.pred_box, "missing": it.missing},
                                    allow_nan=False) + "\n")  # fmt: skip
    return 0
