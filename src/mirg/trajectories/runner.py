"""Build the trajectory set: template mode (offline) and teacher mode (verified, retried, resumable).

Both write into a :class:`~mirg.trajectories.store.TrajectoryStore` and return a :class:`RunReport`;
:func:`compute_stats` gives the folder's state for ``stats.json``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirg.answers import Dialect
from mirg.images import resolve
from mirg.sample import Sample
from mirg.trajectories.records import Resizer, completion_of, make_record, relative_images
from mirg.trajectories.store import TEMPLATE_KEY, TrajectoryStore, run_key
from mirg.trajectories.teacher_prompt import PROMPT_VERSION, hint_block, teacher_messages
from mirg.trajectories.teachers import TeacherReplyError, TeacherUnavailable
from mirg.trajectories.template import TemplateError, template_reasoning
from mirg.trajectories.verify import DEFAULT_TAU, extract_reasoning, verify_completion


@dataclass
class RunReport:
    """What one run did (the final state of the folder is :func:`compute_stats`)."""

    key: str = TEMPLATE_KEY  # the run key: the teacher key, or "template"
    kept: int = 0  # trajectories accepted in this run
    dropped: int = 0  # samples dropped in this run
    skipped_done: int = 0  # samples already complete under this key
    skipped_dropped: int = 0  # samples dropped by an earlier run (not retried)
    pending: int = 0  # samples left for a rerun (transport failures)
    attempts: Counter[str] = field(default_factory=Counter)  # verification outcome per attempt
    requests: dict[str, int] = field(default_factory=dict)  # the teacher's request counters

    def summary(self, seconds: float) -> dict[str, Any]:
        """The ``run`` block of ``stats.json``."""
        run = {
            "seconds": round(seconds, 2),
            "kept_now": self.kept,
            "dropped_now": self.dropped,
            "pending_now": self.pending,
            "skipped_done": self.skipped_done,
            "skipped_dropped": self.skipped_dropped,
            "attempts": dict(sorted(self.attempts.items())),
        }
        if self.requests:
            run["requests"] = dict(sorted(self.requests.items()))
        return run


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=not enabled, dynamic_ncols=True)


def _dropped(s: Sample, key: str, code: str, reasons: list[str]) -> dict[str, Any]:
    return {"id": s.id, "task": s.task, "key": key, "reason": code, "attempts": reasons}


def _kept_reasonings(store: TrajectoryStore, sample_id: str, key: str) -> list[str]:
    """The reasoning of each trajectory ``sample_id`` has under ``key`` (a scan: only when it has one)."""
    if not store.done(sample_id, key):
        return []
    return [
        extract_reasoning(completion_of(r))
        for r in list(store.records)
        if r["id"] == sample_id and run_key(r) == key
    ]


# --- template mode -------------------------------------------------------------------------------------


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
    ``reasoning``: how much of the template's reasoning each trajectory keeps (``full``, ``short``, ``brief``,
    ``compact``; :func:`~mirg.trajectories.template.template_reasoning`)."""
    # runs.json: "reasoning" is left out when "full", so folders written before the option existed resume
    config = {
        "mode": "template",
        "dialect": dialect.name,
        "seed": seed,
        "per_sample": per_sample,
        **({"reasoning": reasoning} if reasoning != "full" else {}),
        **resizer.settings(),
    }
    store.register_run(TEMPLATE_KEY, config, strict=True)
    rep = RunReport()
    with _progress(len(samples), progress, "template") as bar:
        for s in samples:
            bar.update(1)
            if store.done(s.id, TEMPLATE_KEY) >= per_sample:
                rep.skipped_done += 1
                continue
            if store.is_dropped(s.id, TEMPLATE_KEY):
                rep.skipped_dropped += 1
                continue
            try:
                sizes = resizer.sizes(s, root)
                images = relative_images(s, root, store.dir)
                wh = sizes[s.target_image - 1] if s.target_image else None
                texts = _kept_reasonings(store, s.id, TEMPLATE_KEY)
                variant, reasons = 0, []
                while len(texts) < per_sample and variant < per_sample * 4:
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


def run_teacher(
    samples: Sequence[Sample],
    root: Path,
    store: TrajectoryStore,
    teacher: Any,
    settings: TeacherSettings,
    resizer: Resizer,
    progress: bool = False,
) -> RunReport:
    """Ask the teacher for ``settings.per_sample`` verified trajectories per sample, ``settings.concurrency``
    samples at a time. Accepted trajectories are appended as they come; samples failing ``max_attempts``
    times are recorded in ``dropped.jsonl``; samples whose requests never got through stay pending (a rerun
    retries them). A fatal endpoint error (401/403/404) stops the run and is raised."""
    key, config = teacher_key(teacher.config(), settings, resizer)
    store.register_run(key, config)
    dialect = settings.dialect
    rep = RunReport(key)
    lock = threading.Lock()
    stop = threading.Event()

    def count(outcome: str) -> None:
        with lock:
            rep.attempts[outcome] += 1

    def job(s: Sample, need: int) -> tuple[str, list[str], int]:
        """All attempts for one sample: ask, verify, retry; each accepted trajectory is appended at once.
        Returns ('done' | 'dropped' | 'pending', per-attempt reasons, trajectories accepted)."""
        sizes = resizer.sizes(s, root)
        images = [resolve(p, root) for p in s.images]
        messages = teacher_messages(s, dialect, sizes, settings.hint_answer)
        hints = hint_block(s, dialect, sizes, settings.hint_answer)
        images_rel = relative_images(s, root, store.dir)
        seen = set(_kept_reasonings(store, s.id, key))
        reasons: list[str] = []
        for accepted in range(need):
            for _attempt in range(settings.max_attempts):
                if stop.is_set():
                    return "pending", reasons, accepted
                try:
                    text = teacher.complete(messages, images)
                except TeacherUnavailable as e:
                    count("unavailable")
                    reasons.append(f"unavailable: {e}")
                    return "pending", reasons, accepted
                except TeacherReplyError as e:
                    count("bad_reply")
                    reasons.append(f"bad_reply: {e}")
                    continue
                v = verify_completion(s, text, dialect, sizes, settings.tau, hints=hints)
                code, detail = v.code, v.detail
                if v.ok and v.reasoning in seen:
                    code, detail = "duplicate", "same reasoning as a kept trajectory"
                count(code or "ok")
                if code:
                    reasons.append(f"{code}: {detail}")
                    continue
                store.add(make_record(s, dialect, v.reasoning, images_rel, sizes, "teacher", key))
                seen.add(v.reasoning)
                break
            else:
                return "dropped", reasons, accepted
        return "done", reasons, need

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
    queue = iter(todo)
    futures: dict[Any, Sample] = {}
    with (
        _progress(len(todo), progress, f"teacher {key[:8]}") as bar,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="teacher") as pool,
    ):
        try:
            while True:
                # keep at most 2x workers submitted, so a stop or Ctrl-C leaves little queued
                for s, need in itertools.islice(queue, 2 * workers - len(futures)):
                    futures[pool.submit(job, s, need)] = s
                if not futures:
                    break
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
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
                    bar.update(1)
                    bar.set_postfix(kept=rep.kept, dropped=rep.dropped, pending=rep.pending)
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    rep.requests = dict(teacher.counters)
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
    kept = [r for r in store.records if r["id"] in ids and run_key(r) == key]
    kept_ids = {r["id"] for r in kept}
    why_dropped = {
        i: r.get("reason", "?")
        for (i, k), r in store.dropped.items()
        if k == key and i in ids and i not in kept_ids
    }
    per_task: dict[str, dict[str, Any]] = {}
    reasons: Counter[str] = Counter()
    for s in samples:
        t = per_task.setdefault(
            s.task, {"samples": 0, "kept": 0, "dropped": 0, "pending": 0, "why": Counter()}
        )
        t["samples"] += 1
        if s.id in kept_ids:
            t["kept"] += 1
        elif s.id in why_dropped:
            t["dropped"] += 1
            t["why"][why_dropped[s.id]] += 1
            reasons[why_dropped[s.id]] += 1
        else:
            t["pending"] += 1
    lengths = [extract_reasoning(completion_of(r)) for r in kept]
    n_words = [len(x.split()) for x in lengths]
    stats = {
        "key": key,
        "samples": len(ids),
        "kept_samples": len(kept_ids),
        "trajectories": len(kept),
        "dropped_samples": len(why_dropped),
        "pending_samples": len(ids) - len(kept_ids) - len(why_dropped),
        "drop_reasons": dict(sorted(reasons.items())),
        "mean_reasoning_words": round(sum(n_words) / len(n_words), 2) if n_words else 0.0,
        "mean_reasoning_chars": round(sum(map(len, lengths)) / len(lengths), 1) if lengths else 0.0,
        "per_task": dict(sorted(per_task.items())),
    }
    return {**stats, **(extra or {})}
