"""``mirg synth``: write MIG-Synth (samples.jsonl + images/) and optionally a preview contact sheet."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from mirg.errors import MirgError
from mirg.synth.generate import chance_levels, generate_dataset
from mirg.synth.scene import SynthConfig
from mirg.synth.tasks import SYNTH_TASKS


def _range(text: str, what: str, number: type[int] | type[float]) -> tuple[Any, Any]:
    """``MIN-MAX`` or ``N`` (integers; ',' also separates) or ``SMALL,LARGE`` (floats; ':' also separates)."""
    form = "N or MIN-MAX (integers)" if number is int else "SMALL,LARGE (fractions of the image side)"
    try:
        parts = [number(p) for p in re.split("[-,]" if number is int else "[,:]", text)]
    except ValueError:
        parts = []
    if number is int and len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise MirgError(f"{what} must be {form}, got {text!r}")
    return parts[0], parts[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SynthConfig()
    parser.add_argument("--out", required=True, help="output folder (samples.jsonl + images/)")
    parser.add_argument("--n-per-task", type=int, required=True, help="samples per task")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed (>= 0); use different seeds for train/val/test"
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help=f"task keys (space or comma separated; default all): {', '.join(SYNTH_TASKS)}",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=d.image_size,
        help="image side in pixels, 64-1024 (default %(default)s)",
    )
    parser.add_argument(
        "--images",
        default=None,
        help="images per sample, N or MIN-MAX within 2-6, clamped per task (default: per task)",
    )
    parser.add_argument(
        "--distractors",
        default=f"{d.distractors[0]}-{d.distractors[1]}",
        help="extra objects per image, MIN-MAX",
    )
    parser.add_argument(
        "--object-size",
        default=f"{d.object_size[0]},{d.object_size[1]}",
        help="diameters of small and large objects as fractions of the image side, SMALL,LARGE (default %(default)s)",
    )
    parser.add_argument("--noise", type=float, default=d.noise, help="Gaussian pixel noise std, 0-255 units")
    parser.add_argument(
        "--preview", default=None, metavar="PNG", help="also draw a contact sheet to this PNG"
    )
    parser.add_argument(
        "--preview-per-task", type=int, default=2, help="samples per task on the contact sheet"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing samples.jsonl and its images"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    tasks = [t for item in args.tasks for t in item.split(",") if t] if args.tasks else None
    config = SynthConfig(
        image_size=args.image_size,
        images=_range(args.images, "--images", int) if args.images else None,
        distractors=_range(args.distractors, "--distractors", int),
        object_size=_range(args.object_size, "--object-size", float),
        noise=args.noise,
    ).validate()
    if args.preview_per_task < 1:
        raise MirgError(f"--preview-per-task must be at least 1, got {args.preview_per_task}")
    from mirg.outputs import check_out_dir, check_output_file

    check_out_dir(args.out)
    if args.preview:
        check_output_file(args.preview, "--preview", suffixes=[".png"])
    t0 = time.perf_counter()
    samples = generate_dataset(
        args.out, args.n_per_task, args.seed, tasks, config, overwrite=args.overwrite, progress=not args.quiet
    )
    dt = time.perf_counter() - t0
    if args.preview:
        from mirg.synth.preview import draw_preview

        draw_preview(samples, args.out, args.preview, per_task=args.preview_per_task)
    if not args.quiet:
        c = chance_levels(samples)
        print(
            f"wrote {len(samples)} samples to {args.out}/samples.jsonl in {dt:.1f} s ({len(samples) / dt:.0f} samples/s); "
            f"image guessing: uniform {c['uniform']:.2f}, best constant index {c['best_constant']:.2f}, "
            f"target image not named in {c['unnamed_share']:.0%}",
            file=sys.stderr,
        )
        if args.preview:
            print(f"preview: {args.preview}", file=sys.stderr)
    return 0
