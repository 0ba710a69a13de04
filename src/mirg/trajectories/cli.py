"""``mirg trajectories --data DATA --out OUT --mode template|teacher``: verified reasoning trajectories for SFT.

Writes ``OUT/trajectories.jsonl`` (the SFT set; format in :mod:`mirg.trajectories.records`),
``OUT/dropped.jsonl``, ``OUT/runs.json`` and ``OUT/stats.json``. See docs/trajectories.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from mirg.errors import MirgError
from mirg.trajectories.build import build, write_template_trajectories
from mirg.trajectories.records import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
from mirg.trajectories.runner import TeacherSettings, run_teacher
from mirg.trajectories.teachers import ChatCompletionsTeacher, LocalTeacher, endpoint_url, redact
from mirg.trajectories.template import REASONING_LENGTHS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="Sample JSONL, or MGrounding-630k JSON/JSONL")
    p.add_argument("--format", choices=("auto", "samples", "mgrounding"), default="auto",
                   help="data format (default: detected)")  # fmt: skip
    p.add_argument(
        "--image-root", help="folder the image paths are relative to (default: the data file's folder)"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mode", required=True, choices=("template", "teacher"))
    p.add_argument("--dialect", choices=("qwen2_5_vl", "qwen2_vl"),
                   help="answer dialect of the student (default: --model's family, else qwen2_5_vl)")  # fmt: skip
    g = p.add_argument_group("student processor (answer coordinates)")
    g.add_argument(
        "--model", help="student checkpoint folder; only its processor is read (resized image sizes)"
    )
    g.add_argument("--min-pixels", type=int, default=DEFAULT_MIN_PIXELS,
                   help="without --model: processor min_pixels (default %(default)s, the tiny model's)")  # fmt: skip
    g.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="without --model: processor max_pixels (default %(default)s, the tiny model's)")  # fmt: skip
    p.add_argument("--per-sample", type=int, default=1, help="trajectories per sample (default 1)")
    p.add_argument("--seed", type=int, default=0, help="template phrasing seed (default 0)")
    p.add_argument("--reasoning", choices=REASONING_LENGTHS, default="full",
                   help="template: full = the four steps (default), short = the cross-image step and the "
                        "localisation, brief = the localisation only, compact = two short sentences of its "
                        "own (the deciding relation, then the object)")  # fmt: skip
    p.add_argument("--limit", type=int, help="only the first N samples")
    p.add_argument("--overwrite", action="store_true", help="start OUT afresh instead of resuming")
    p.add_argument(
        "--retry-dropped", action="store_true", help="teacher: retry samples dropped by an earlier run"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    t = p.add_argument_group("teacher mode")
    t.add_argument("--teacher-backend", choices=("openai", "transformers"),
                   help="openai: chat-completions endpoint (--base-url); transformers: local checkpoint "
                        "(default: openai when --base-url is given)")  # fmt: skip
    t.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    t.add_argument("--teacher-model", help="model name at the endpoint, or a local checkpoint folder")
    t.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (default %(default)s; never logged)")  # fmt: skip
    t.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    t.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    t.add_argument("--http-retries", type=int, default=4, help="retries on 429/5xx/timeouts (default 4)")
    t.add_argument(
        "--backoff", type=float, default=1.0, help="first retry wait in seconds, doubled each time"
    )
    t.add_argument("--max-attempts", type=int, default=3,
                   help="tries per trajectory before the sample is dropped (default 3)")  # fmt: skip
    t.add_argument(
        "--iou-threshold", type=float, default=0.5, help="verification IoU threshold tau (default 0.5)"
    )
    t.add_argument(
        "--temperature", type=float, default=0.7, help="teacher sampling temperature (default 0.7)"
    )
    t.add_argument(
        "--max-tokens", type=int, default=1024, help="teacher reply budget in tokens (default 1024)"
    )
    t.add_argument("--no-hint-answer", action="store_true",
                   help="leave the correct answer out of the hint block (annotations only)")  # fmt: skip


def _check(args: argparse.Namespace) -> None:
    if args.per_sample < 1:
        raise MirgError(f"--per-sample must be >= 1, got {args.per_sample}")
    if args.limit is not None and args.limit < 1:
        raise MirgError(f"--limit must be >= 1, got {args.limit}")
    if args.mode == "teacher":
        if args.reasoning != "full":
            raise MirgError("--reasoning applies to template mode (a teacher writes its own reasoning)")
        if args.concurrency < 1:
            raise MirgError(f"--concurrency must be >= 1, got {args.concurrency}")
        if args.max_attempts < 1:
            raise MirgError(f"--max-attempts must be >= 1, got {args.max_attempts}")
        if not 0 < args.iou_threshold <= 1:
            raise MirgError(f"--iou-threshold must be in (0, 1], got {args.iou_threshold}")
        # written so that nan fails too
        if not (args.timeout > 0 and args.http_retries >= 0 and args.backoff >= 0):
            raise MirgError("--timeout must be > 0, --http-retries and --backoff >= 0")
        if not (0 <= args.temperature < math.inf and args.max_tokens >= 1):
            raise MirgError(
                f"--temperature must be a number >= 0 and --max-tokens >= 1, got {args.temperature} and "
                f"{args.max_tokens}"
            )
        if args.base_url:
            endpoint_url(args.base_url)  # a bad URL is refused before the output folder is touched


def make_teacher(args: argparse.Namespace) -> Any:
    backend = args.teacher_backend or ("openai" if args.base_url else "transformers")
    if backend == "openai":
        if not args.base_url:
            raise MirgError("--teacher-backend openai needs --base-url")
        return ChatCompletionsTeacher(
            args.base_url,
            args.teacher_model or "",
            api_key_env=args.api_key_env,
            timeout=args.timeout,
            retries=args.http_retries,
            backoff=args.backoff,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
        )
    if not args.teacher_model:
        raise MirgError(
            "teacher mode needs --base-url (HTTP teacher) or --teacher-model DIR (local checkpoint)"
        )
    if not Path(args.teacher_model).is_dir():
        raise MirgError(
            f"--teacher-model {args.teacher_model} is not a checkpoint folder (for an HTTP teacher give --base-url)"
        )
    return LocalTeacher(args.teacher_model, max_new_tokens=args.max_tokens)


def _frame(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`~mirg.trajectories.build.build` (data, student, output folder)."""
    return {
        "model": args.model,
        "dialect": args.dialect,
        "min_pixels": args.min_pixels,
        "max_pixels": args.max_pixels,
        "data_format": args.format,
        "image_root": args.image_root,
        "limit": args.limit,
        "overwrite": args.overwrite,
    }


def run(args: argparse.Namespace) -> int:
    _check(args)
    progress = not args.no_progress and sys.stderr.isatty()
    if args.mode == "template":
        stats = write_template_trajectories(
            args.data,
            args.out,
            seed=args.seed,
            reasoning=args.reasoning,
            per_sample=args.per_sample,
            progress=progress,
            **_frame(args),
        )
    else:
        stats = run_teacher_mode(args, progress)
    print(
        f"{stats['kept_samples']}/{stats['samples']} samples kept ({stats['trajectories']} trajectories), "
        f"{stats['dropped_samples']} dropped, {stats['pending_samples']} pending; "
        f"mean reasoning {stats['mean_reasoning_words']} words; wrote {Path(args.out) / 'trajectories.jsonl'}"
    )
    if stats["drop_reasons"]:
        print("dropped: " + ", ".join(f"{k} {v}" for k, v in stats["drop_reasons"].items()))
    this_run = stats["run"]
    unreachable = this_run["attempts"].get("unavailable", 0)
    if unreachable and stats["pending_samples"]:
        pending = (f"{stats['pending_samples']} sample(s) stay pending: rerun the same command to resume "
                   "(stats.json has the counts)")  # fmt: skip
        if not (this_run["kept_now"] or this_run["dropped_now"]):  # nothing got through: the teacher is down
            where = redact(args.base_url) if args.base_url else args.teacher_model
            print(f"mirg: error: the teacher at {where} could not be reached; {pending}", file=sys.stderr)
            return 1
        print(f"mirg: warning: {unreachable} request(s) to the teacher failed after retries; {pending}",
              file=sys.stderr)  # fmt: skip
    return 0


def run_teacher_mode(args: argparse.Namespace, progress: bool) -> dict[str, Any]:
    """Teacher mode: ask, verify, retry, write; returns the folder's stats (as in ``stats.json``)."""

    def teach(samples: list, root: Path, store: Any, dialect: Any, resizer: Any) -> tuple[Any, dict]:
        teacher = make_teacher(args)
        settings = TeacherSettings(
            dialect=dialect,
            per_sample=args.per_sample,
            max_attempts=args.max_attempts,
            tau=args.iou_threshold,
            hint_answer=not args.no_hint_answer,
            concurrency=args.concurrency if teacher.name == "openai" else 1,
            retry_dropped=args.retry_dropped,
        )
        rep = run_teacher(samples, root, store, teacher, settings, resizer, progress)
        return rep, {"mode": "teacher", "dialect": dialect.name, "teacher_key": rep.key}

    return build(args.data, args.out, teach, **_frame(args))
