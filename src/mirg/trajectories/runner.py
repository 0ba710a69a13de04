"""Build the trajectory set: template mode (offline) and teacher mode (verified, retried, resumable).

Both write into a :class:`~mirg.trajectories.store.TrajectoryStore` and finish with ``stats.json``
(:func:`compute_stats`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirg.answers import Dialect
from mirg.sample import Sample
from mirg.trajectories.records import Resizer, completion_of, make_record, relative_images
from mirg.trajectories.store import STATS, TEMPLATE_KEY, TrajectoryStore
from mirg.trajectories.teacher_prompt import PROMPT_VERSION, hint_block, teacher_messages
from mirg.trajectories.teachers import TeacherReplyError, TeacherUnavailable
from mirg.trajectories.template import TemplateError, template_reasoning
from mirg.trajectories.verify import DEFAULT_TAU, extract_reasoning, verify_completion


@dataclass
class RunReport:
    """What one run did (the final state of the folder is in ``stats``)."""

    kept: int = 0  # trajectories accepted in this run
    dropped: int = 0  # samples dropped in this run
    skipped_done: int = 0  # samples already complete under this key
    skipped_dropped: int = 0  # samples dropped by an earlier run (not retried)
    pending: int = 0  # samples left for a rerun (transport failures)
    attempts: Counter[str] = field(default_factory=Counter)  # verification outcome per attempt
    stats: dict[str, Any] = field(default_factory=dict)


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=not enabled, dynamic_ncols=True)


# --- template mode -------------------------------------------------------------------------------------


def template_config(
    dialect: Dialect, seed: int, per_sample: int, resizer: Resizer, reasoning: str = "full"
) -> dict[str, Any]:
    """The settings a template run is made with (``runs.json``); ``reasoning`` is left out when ``full``, so
    folders written before the option existed resume."""
    return {
        "mode": "template",
        "dialect": dialect.name,
        "seed": seed,
        "per_sample": per_sample,
        **({"reasoning": reasoning} if reasoning != "full" else {}),
        **resizer.settings(),
    }


def run_template(
    samples: Sequence[Sample],
    root: Path,
    store: TrajectoryStore,
    dialect: Dialect,
    resizer: Resizer,
    seed: int = 0,
    per_sample: int = 1,
    progress: bool = False,
    reasoning: str = "full",
) -> RunReport:
    """Write ``per_sample`` template trajectories per annotated sample (distinct phrasings), each verified
    (the parsed answer must be the ground truth). Samples without target or annotations are dropped.
    ``reasoning``: how much of the template's reasoning each trajectory keeps (``full``, ``short``, ``brief``;
    :func:`~mirg.trajectories.template.template_reasoning`)."""
    config = template_config(dialect, seed, per_sample, resizer, reasoning)
    store.register_run(TEMPLATE_KEY, config, strict=True)
    rep = RunReport()
    with _progress(len(samples), progress, "template") as bar:
        for s in samples:
            bar.update(1)
            have = store.done(s.id, TEMPLATE_KEY)
            if have >= per_sample:
                rep.skipped_done += 1
                continue
            if store.is_dropped(s.id, TEMPLATE_KEY):
                rep.skipped_dropped += 1
                continue
            try:
                sizes = resizer.sizes(s, root)
                images = relative_images(s, root, store.dir)
                texts: list[str] = []
                if have:
                    texts = [
                        extract_reasoning(completion_of(r))
                        for r in store.records
                        if r["id"] == s.id and r.get("teacher_key") is None
                    ]
                variant, reasons = 0, []
                while len(texts) < per_sample and variant < per_sample * 4:
                    wh = sizes[s.target_image - 1] if s.target_image else None  # type: ignore[operator]
                    text = template_reasoning(s, dialect, wh, seed=seed, variant=variant, reasoning=reasoning)
                    variant += 1
                    if text in texts:
                        rep.attempts["duplicate"] += 1
                        continue
                    rec = make_record(s, dialect, text, images, sizes, "template", None)
                    v = verify_completion(s, completion_of(rec), dialect, sizes, tau=0.5)
                    rep.attempts[v.code or "ok"] += 1
                    if not v.ok:
                        reasons.append(f"{v.code}: {v.detail}")
                        continue
                    store.add(rec)
                    texts.append(text)
                    rep.kept += 1
                if len(texts) < per_sample:
                    code = reasons[-1].split(":")[0] if reasons else "duplicate"
                    store.add_dropped(
                        _dropped(s, TEMPLATE_KEY, code, reasons or ["not enough distinct phrasings"])
                    )
                    rep.dropped += 1
            except TemplateError as e:
                store.add_dropped(_dropped(s, TEMPLATE_KEY, e.code, [str(e)]))
                rep.dropped += 1
            bar.set_postfix(kept=rep.kept, dropped=rep.dropped)
    return rep


def _dropped(s: Sample, key: str, code: str, reasons: list[str]) -> dict[str, Any]:
    return {"id": s.id, "task": s.task, "key": key, "reason": code, "attempts": reasons}


# --- teacher mode --------------------------------------------------------------------------------------


@dataclass
class TeacherSettings:
    """How teacher trajectories are asked for and checked (all but the I/O knobs enter the teacher key)."""

    dialect: Dialect
    per_sample: int = 1
    max_attempts: int = 3  # tries per trajectory (failed verification or a failed reply), then dropped
    tau: float = DEFAULT_TAU
    hint_answer: bool = True
    concurrency: int = 4
    retry_dropped: bool = False


def teacher_key(
    teacher_config: dict[str, Any], settings: TeacherSettings, resizer: Resizer
) -> tuple[str, dict]:
    """(key, config): a 16-hex hash of what decides the teacher's output and its acceptance — backend and
    model, sampling, prompt version, hints, dialect and resize settings, tau, attempts. Not the URL, key,
    concurrency or timeouts."""
    config = {
        **teacher_config,
        "prompt": PROMPT_VERSION,
        "hint_answer": settings.hint_answer,
        "dialect": settings.dialect.name,
        "tau": settings.tau,
        "max_attempts": settings.max_attempts,
        **resizer.settings(),
    }
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return digest, config


class _Job:
    """All attempts for one sample: ask, verify, retry; append each accepted trajectory at once."""

    def __init__(self, sample: Sample, need: int, ctx: _TeacherCtx):
        self.s = sample
        self.need = need
        self.ctx = ctx

    def __call__(self) -> tuple[str, list[str], int]:
        """('done' | 'dropped' | 'pending', per-attempt reasons, trajectories accepted)."""
        c, s = self.ctx, self.s
        sizes = c.resizer.sizes(s, c.root)
        images_abs = [str(c.root / p) if not Path(p).is_absolute() else p for p in s.images]
        messages = teacher_messages(s, c.settings.dialect, sizes, c.settings.hint_answer)
        hints = hint_block(s, c.settings.dialect, sizes, c.settings.hint_answer)
        images_rel = relative_images(s, c.root, c.store.dir)
        reasons: list[str] = []
        seen: set[str] = set()
        if c.store.done(s.id, c.key):
            seen = {
                extract_reasoning(completion_of(r))
                for r in list(c.store.records)
                if r["id"] == s.id and r.get("teacher_key") == c.key
            }
        accepted = 0
        for _ in range(self.need):
            for _attempt in range(1, c.settings.max_attempts + 1):
                if c.stop:
                    return "pending", reasons, accepted
                try:
                    text = c.teacher.complete(messages, images_abs)
                except TeacherUnavailable as e:
                    c.count("unavailable")
                    reasons.append(f"unavailable: {e}")
                    return "pending", reasons, accepted
                except TeacherReplyError as e:
                    c.count("bad_reply")
                    reasons.append(f"bad_reply: {e}")
                    continue
                v = verify_completion(s, text, c.settings.dialect, sizes, c.settings.tau, hints=hints)
                if v.ok and v.reasoning in seen:
                    v = type(v)(False, "duplicate", "same reasoning as a kept trajectory", v.reasoning)
                c.count(v.code or "ok")
                if not v.ok:
                    reasons.append(f"{v.code}: {v.detail}")
                    continue
                rec = make_record(s, c.settings.dialect, v.reasoning, images_rel, sizes, "teacher", c.key)
                c.store.add(rec)
                seen.add(v.reasoning)
                accepted += 1
                break
            else:
                return "dropped", reasons, accepted
        return "done", reasons, accepted


@dataclass
class _TeacherCtx:
    teacher: Any
    store: TrajectoryStore
    settings: TeacherSettings
    resizer: Resizer
    root: Path
    key: str
    attempts: Counter[str] = field(default_factory=Counter)
    stop: bool = False

    def __post_init__(self) -> None:
        import threading

        self._lock = threading.Lock()

    def count(self, what: str) -> None:
        with self._lock:
            self.attempts[what] += 1


def run_teacher(
    samples: Sequence[Sample],
    root: Path,
    store: TrajectoryStore,
    teacher: Any,
    settings: TeacherSettings,
    resizer: Resizer,
    progress: bool = False,
    on_result: Callable[[str, str], None] | None = None,
) -> RunReport:
    """Ask the teacher for ``settings.per_sample`` verified trajectories per sample, ``settings.concurrency``
    samples at a time. Accepted trajectories are appended as they come; samples failing ``max_attempts``
    times are recorded in ``dropped.jsonl``; samples whose requests never got through stay pending (a rerun
    retries them). A fatal endpoint error (401/403/404) stops the run and is raised."""
    key, config = teacher_key(teacher.config(), settings, resizer)
    store.register_run(key, config)
    ctx = _TeacherCtx(teacher, store, settings, resizer, root, key)
    rep = RunReport()
    todo: list[tuple[Sample, int]] = []
    for s in samples:
        have = store.done(s.id, key)
        if have >= settings.per_sample:
            rep.skipped_done += 1
        elif s.target_image is None or s.target_box is None:
            if not store.is_dropped(s.id, key):
                store.add_dropped(_dropped(s, key, "no_target", ["sample has no target image/box"]))
            rep.dropped += 1
        elif store.is_dropped(s.id, key) and not settings.retry_dropped:
            rep.skipped_dropped += 1
        else:
            todo.append((s, settings.per_sample - have))
    workers = max(1, settings.concurrency)
    with _progress(len(todo), progress, f"teacher {key[:8]}") as bar:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="teacher")
        futures: dict[Future, Sample] = {}
        try:
            it = iter(todo)

            # keep at most 2x workers submitted, so a stop or Ctrl-C leaves little queued
            def refill() -> None:
                while len(futures) < 2 * workers:
                    nxt = next(it, None)
                    if nxt is None:
                        return
                    futures[pool.submit(_Job(nxt[0], nxt[1], ctx))] = nxt[0]

            refill()
            while futures:
                finished, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for f in finished:
                    s = futures.pop(f)
                    status, reasons, accepted = f.result()  # re-raises TeacherFatal and image errors
                    rep.kept += accepted
                    if status == "dropped":
                        code = reasons[-1].split(":")[0] if reasons else "failed"
                        store.add_dropped(_dropped(s, key, code, reasons))
                        rep.dropped += 1
                    elif status == "pending":
                        rep.pending += 1
                    if on_result is not None:
                        on_result(s.id, status)
                    bar.update(1)
                    bar.set_postfix(kept=rep.kept, dropped=rep.dropped, pending=rep.pending)
                refill()
        except BaseException:
            ctx.stop = True
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    rep.attempts = ctx.attempts
    return rep


# --- stats ---------------------------------------------------------------------------------------------


def compute_stats(
    samples: Sequence[Sample],
    store: TrajectoryStore,
    key: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The folder's state for ``samples`` under run key ``key``: kept/dropped/pending per task, drop reasons,
    mean reasoning length (words and characters over kept trajectories)."""
    ids = {s.id for s in samples}
    kept = [r for r in store.records if r["id"] in ids and (r.get("teacher_key") or TEMPLATE_KEY) == key]
    kept_ids = {r["id"] for r in kept}
    dropped = {
        r["id"]: r
        for r in store.dropped_records
        if r["id"] in ids and (r.get("key") or TEMPLATE_KEY) == key and r["id"] not in kept_ids
    }
    per_task: dict[str, dict[str, Any]] = {}
    for s in samples:
        t = per_task.setdefault(s.task, {"samples": 0, "kept": 0, "dropped": 0, "pending": 0, "why": {}})
        t["samples"] += 1
        if s.id in kept_ids:
            t["kept"] += 1
        elif s.id in dropped:
            t["dropped"] += 1
            why = dropped[s.id].get("reason", "?")
            t["why"][why] = t["why"].get(why, 0) + 1
        else:
            t["pending"] += 1
    reasons: Counter[str] = Counter()
    for t in per_task.values():
        reasons.update(t["why"])
    lengths = [extract_reasoning(completion_of(r)) for r in kept]
    n_words = [len(x.split()) for x in lengths]
    stats = {
        "key": key,
        "samples": len(ids),
        "kept_samples": len(kept_ids),
        "trajectories": len(kept),
        "dropped_samples": len(dropped),
        "pending_samples": len(ids) - len(kept_ids) - len(dropped),
        "drop_reasons": dict(sorted(reasons.items())),
        "mean_reasoning_words": round(sum(n_words) / len(n_words), 2) if n_words else 0.0,
        "mean_reasoning_chars": round(sum(map(len, lengths)) / len(lengths), 1) if lengths else 0.0,
        "per_task": dict(sorted(per_task.items())),
    }
    if extra:
        stats.update(extra)
    return stats


def write_stats(stats: dict[str, Any], store: TrajectoryStore) -> Path:
    path = store.dir / STATS
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def report_extra(rep: RunReport, seconds: float, counters: dict[str, int] | None = None) -> dict[str, Any]:
    run = {
        "seconds": round(seconds, 2),
        "kept_now": rep.kept,
        "dropped_now": rep.dropped,
        "pending_now": rep.pending,
        "skipped_done": rep.skipped_done,
        "skipped_dropped": rep.skipped_dropped,
        "attempts": dict(sorted(rep.attempts.items())),
    }
    if counters:
        run["requests"] = dict(sorted(counters.items()))
    return {"run": run}


def now() -> float:
    return time.perf_counter()
