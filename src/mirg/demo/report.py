"""The demo report: :func:`mirg.report.write_report` on the demo's evaluated stages (``eval/base``, ``eval/sft``,
``eval/rl`` against ``data/test``), its SFT and RL curves, the gallery from SFT+RL, the line on the base's own
grounding, and the ablation table when ``--ablation`` ran.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from mirg.compare import paired
from mirg.demo.stages import MARKER
from mirg.errors import MirgError
from mirg.report import METRICS, PROTOCOL
from mirg.report import write_report as write
from mirg.runs import EvalRun, load_run
from mirg.stats import sign_test

STAGES = (("base", "base"), ("sft", "SFT"), ("rl", "SFT+RL"))


def stage_runs(out: Path) -> list[EvalRun]:
    """The evaluated stages of a demo folder, labelled base / SFT / SFT+RL, scored on ``data/test``."""
    data = out / "data" / "test" / "samples.jsonl"
    found = []
    for key, label in STAGES:
        preds = out / "eval" / key / "predictions.jsonl"
        if preds.is_file() and preds.stat().st_size:
            found.append(load_run(out / "eval" / key, label, data))
    return found


def ablation_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Variants as rows: mean ± sample standard deviation over the training seeds."""
    header = ["variant"] + [f"{label} (mean ± sd)" for _, label in METRICS] + ["seeds"]
    rows = []
    for v in results["variants"].values():
        cells = [v["label"]]
        for key, _ in METRICS:
            values = [r["average"].get(key, 0.0) for r in v["runs"]]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.1f} ± {sd:.1f}")
        cells.append(str(len(v["runs"])))
        rows.append(cells)
    return header, rows


# The ablation's paired comparisons: (variant, against variant); each on Acc@0.5 and on image accuracy.
ABLATION_PAIRS = (
    ("sft_rl_dual", "sft_rl_object"),
    ("sft_rl_dual", "sft_only"),
    ("sft_rl_object", "sft_only"),
)


def ablation_paired_rows(out: Path, results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Each pair of :data:`ABLATION_PAIRS` per measure: the test samples only one of the two gets right at each
    training seed, their sums over seeds and the exact McNemar p of the sums (the seeds answer the same test
    samples, so "pooled" is one test over every seed's pairs). Pairs whose runs are missing are left out."""
    data = out / "data" / "test" / "samples.jsonl"
    variants = results["variants"]
    runs = {v: {r["seed"]: r["eval_dir"] for r in variants[v]["runs"]} for v in variants}
    # each (variant, seed) run loaded once; eval_dir is relative to out (older results.json: as given at run time)
    wanted = {v for pair in ABLATION_PAIRS for v in pair}
    loaded = {(v, s): load_run(out / d if (out / d).is_dir() else Path(d), v, data)
              for v in wanted for s, d in runs.get(v, {}).items()}  # fmt: skip
    header = ["comparison", "measure", "only the first / only the second, per seed", "pooled", "p (pooled)"]
    rows = []
    for a, b in ABLATION_PAIRS:
        seeds = [s for s in results["seeds"] if (a, s) in loaded and (b, s) in loaded]
        if not seeds:
            continue
        for measure, name in (("acc", "Acc@0.5"), ("image", "image accuracy")):
            pairs = [paired(loaded[a, s].hits(measure), loaded[b, s].hits(measure)) for s in seeds]
            only_a, only_b = sum(r["only_a"] for r in pairs), sum(r["only_b"] for r in pairs)
            per_seed = ", ".join(
                f"seed {s}: {r['only_a']} / {r['only_b']}" for s, r in zip(seeds, pairs, strict=True)
            )
            rows.append([f"{variants[a]['label']} vs {variants[b]['label']}", name, per_seed,
                         f"{only_a} / {only_b}", f"{sign_test(only_a, only_b):.2g}"])  # fmt: skip
    return header, rows


def base_note(base: dict[str, Any]) -> str:
    """One line on a pretrained base's own grounding (from its model card's metrics), or ''."""
    refer = base.get("single_image_refer")
    if not refer:
        return ""
    acc, cap = refer["acc@0.5"], refer["max_objects"]
    verdict = "meets" if acc >= 0.9 and cap >= 5 else "is below"
    scenes = "1-object scenes" if cap == 1 else f"1-{cap}-object scenes"
    return (f"Base: {base.get('source')} pretrained checkpoint; held-out single-image referring Acc@0.5 "
            f"{100 * acc:.1f} % on {scenes}, which {verdict} the perception-pretraining target of 90 % on "
            "1-5-object scenes (lab/NOTES.md).")  # fmt: skip


# GRPO diagnostics: TRL's per-step metrics (rl/metrics.jsonl) -> (column, key); start and end are the means of the
# first and last tenth of the logged steps (at least one step each).
RL_DIAGNOSTICS = (
    ("reward", "reward"),
    ("format", "rewards/format_reward/mean"),
    ("image", "rewards/image_reward/mean"),
    ("object", "rewards/object_reward/mean"),
    ("groups with zero reward spread", "frac_reward_zero_std"),
    ("clipped completions", "completions/clipped_ratio"),
    ("completion tokens", "completions/mean_length"),
    ("entropy", "entropy"),
    ("KL", "kl"),
)


def rl_diagnostics(folder: Path) -> dict[str, Any] | None:
    """{steps, column: (start, end)} from ``folder/metrics.jsonl`` of a GRPO run (None without one); a metric
    TRL did not log (KL with ``beta`` 0) is left out, and so is the zero-spread share of a run with batch-level
    advantage scaling (TRL then tests the batch's reward std, not each group's)."""
    path = Path(folder) / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "reward" in rec:
            rows.append(rec)
    if not rows:
        return None
    k = max(1, len(rows) // 10)
    out: dict[str, Any] = {"steps": len(rows)}
    for label, key in RL_DIAGNOSTICS:
        if key == "frac_reward_zero_std" and _stage_setting(folder, "scale_rewards") == "batch":
            continue
        first = [r[key] for r in rows[:k] if isinstance(r.get(key), int | float)]
        last = [r[key] for r in rows[-k:] if isinstance(r.get(key), int | float)]
        if first and last:
            out[label] = (statistics.fmean(first), statistics.fmean(last))
    return out


def _stage_setting(folder: Path, name: str) -> Any:
    """A setting a demo stage recorded in its ``stage.json`` (None when absent or unreadable)."""
    try:
        return json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))["settings"].get(name)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def rl_runs(out: Path) -> list[tuple[str, Path]]:
    """(label, folder) of every GRPO run of a demo folder: the main SFT+RL and the ablation's."""
    runs = [("SFT+RL", out / "rl")]
    for seed_dir in sorted((out / "ablation").glob("seed-*")):
        for name in ("rl", "rl_only", "sft_rl_object"):
            runs.append((f"ablation {seed_dir.name} {name}", seed_dir / name))
    return [(label, f) for label, f in runs if (f / "metrics.jsonl").is_file()]


def rl_diagnostic_rows(out: Path) -> tuple[list[str], list[list[str]]]:
    """One row per GRPO run: each diagnostic as 'start -> end'."""
    found = [(label, rl_diagnostics(f)) for label, f in rl_runs(out)]
    found = [(label, d) for label, d in found if d]
    labels = [c for c, _ in RL_DIAGNOSTICS if any(c in d for _, d in found)]
    header = ["GRPO run", "steps", *labels]
    rows = []
    for label, d in found:
        cells = [label, str(d["steps"])]
        for c in labels:
            a, b = d.get(c, (None, None))
            digits = 1 if c == "completion tokens" else 3
            cells.append("-" if a is None else f"{a:.{digits}f} -> {b:.{digits}f}")
        rows.append(cells)
    return header, rows


def validation_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The validation split's SFT and SFT+RL averages (``val_per_task``), empty rows when there is none."""
    val = summary.get("validation") or {}
    header = ["stage", *[label for _, label in METRICS]]
    rows = [[name, *[f"{v.get(key, 0.0):.1f}" for key, _ in METRICS]]
            for key, name in (("sft", "SFT"), ("rl", "SFT+RL")) if (v := val.get(key))]  # fmt: skip
    return header, rows


def write_report(
    out: str | Path, summary: dict[str, Any], ablation: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``out/report.md`` and ``out/report.html``; returns their paths."""
    out = Path(out)
    runs = stage_runs(out)
    if not runs:
        raise MirgError(f"demo report: no evaluated stage under {out / 'eval'}")
    note = base_note(summary.get("base") or {})
    seed = (summary.get("data_seeds") or {}).get("val")
    tables = [
        ("GRPO diagnostics (mean of the first -> last tenth of the logged steps)", *rl_diagnostic_rows(out)),
        (
            f"Validation split (seed {seed}; for choosing settings, not the test set)",
            *validation_rows(summary),
        ),
    ]
    if ablation:  # results.json lists every variant, so its table always has rows
        seeds = ", ".join(map(str, ablation["seeds"]))
        tables += [
            (f"Ablation (same data and per-stage budget; training seeds {seeds})", *ablation_rows(ablation)),
            ("Ablation, paired on the test samples (exact McNemar)", *ablation_paired_rows(out, ablation)),
        ]
    return write(
        out, runs, training=[("SFT", out / "sft"), ("RL", out / "rl")],
        per_kind=int(summary.get("settings", {}).get("gallery_per_kind", 4)), title="mirg demo report",
        intro=f"Held-out MIG-Synth test set; {PROTOCOL}", row_name="stage",
        warnings=[f"{summary['warning']}. The base model is a random tiny model."] if summary.get("warning") else [],
        notes=[note] if note else [], tables=[t for t in tables if t[2]],
        config={k: summary.get(k) for k in ("settings", "data_seeds", "base", "device", "stage_seconds")},
    )  # fmt: skip
