"""``mirg compare A B [C ...]``: is one model better than another on the same samples? A paired comparison.

Runs evaluated on the same data answer the same samples, so two runs are compared by the samples only one of
them gets right, with the exact two-sided McNemar (sign) test: per task and over all shared samples, on Acc@0.5
and on image accuracy, with each run's hits and their 95 % Wilson interval. Every pair of runs is compared (in
the order given). Samples not every run answered are left out (and counted); runs whose shared ids hold
different samples (another question, target or task) are refused. Markdown to stdout, JSON with ``--json``.

    mirg compare runs/demo/eval/sft runs/demo/eval/rl
    mirg compare runs/a/eval/sft runs/b/eval/sft --json cmp.json     # two demos, stage by stage
"""

from __future__ import annotations

import argparse
import json
from itertools import combinations
from pathlib import Path
from typing import Any

from mirg.errors import MirgError
from mirg.migbench import ordered_tasks
from mirg.outputs import check_output_file
from mirg.runs import MEASURES, EvalRun, load_runs
from mirg.sample import Sample
from mirg.scoring import md_table
from mirg.stats import hits_text, sign_test, wilson_interval


def paired(a: dict[str, bool], b: dict[str, bool], ids: list[str] | None = None) -> dict[str, Any]:
    """Hits of each (with their 95 % Wilson interval), the discordant counts and the exact McNemar p over ``ids``
    (default: the ids both have)."""
    ids = sorted(a.keys() & b.keys()) if ids is None else [i for i in ids if i in a and i in b]
    only_a = sum(a[i] and not b[i] for i in ids)
    only_b = sum(b[i] and not a[i] for i in ids)
    hits_a, hits_b = sum(a[i] for i in ids), sum(b[i] for i in ids)
    return {"n": len(ids), "hits_a": hits_a, "hits_b": hits_b, "ci_a": wilson_interval(hits_a, len(ids)),
            "ci_b": wilson_interval(hits_b, len(ids)), "only_a": only_a, "only_b": only_b,
            "p": sign_test(only_a, only_b)}  # fmt: skip


def paired_lines(hits: dict[str, dict[str, bool]]) -> list[str]:
    """One line per pair of runs (each later one against each earlier one): the samples only one gets right and
    the exact two-sided McNemar p of that split."""
    lines = []
    for a, b in combinations(hits, 2):
        r = paired(hits[a], hits[b])
        lines.append(f"{b} vs {a} on the same {r['n']} samples: right only for {b} {r['only_b']}, only for {a} "
                     f"{r['only_a']}; exact McNemar p = {r['p']:.2g}")  # fmt: skip
    return lines


def _key(s: Sample) -> dict[str, Any]:
    return {"task": s.task, "question": s.question, "images": len(s.images), "target image": s.target_image,
            "target box": s.target_box}  # fmt: skip


def shared_ids(runs: list[EvalRun]) -> list[str]:
    """Ids every run answered (first run's order); MirgError when a shared id holds different samples."""
    first = {s.id: s for s in runs[0].samples}
    ids = set(first)
    for run in runs[1:]:
        for s in run.samples:
            if s.id in first and _key(s) != _key(first[s.id]):
                field = next(k for k, v in _key(s).items() if v != _key(first[s.id])[k])
                raise MirgError(f"{runs[0].label} and {run.label} are not on the same data: sample {s.id!r} has "
                                f"another {field} ({runs[0].data} and {run.data})")  # fmt: skip
        ids &= {s.id for s in run.samples}
    if not ids:
        datas = ", ".join(sorted({str(r.data) for r in runs}))
        raise MirgError(
            f"{', '.join(r.label for r in runs)}: no sample answered by every run (data: {datas})"
        )
    return [s.id for s in runs[0].samples if s.id in ids]


def compare_runs(runs: list[EvalRun]) -> dict[str, Any]:
    """The JSON of ``mirg compare``: runs, shared samples, and per pair and measure the overall and per-task
    paired results (``a`` is the earlier run of the pair)."""
    if len(runs) < 2:
        raise MirgError("compare needs at least two runs")
    ids = shared_ids(runs)
    task_of = {s.id: s.task for s in runs[0].samples}
    tasks = ordered_tasks({task_of[i] for i in ids})
    out: dict[str, Any] = {"shared": len(ids), "runs": [], "pairs": []}
    for r in runs:
        out["runs"].append({"label": r.label, "folder": str(r.folder), "model": r.info.get("model"),
                            "data": str(r.data), "answered": len(r.samples), "left_out": len(r.samples) - len(ids),
                            "named_images": r.named_images()})  # fmt: skip
    for a, b in combinations(runs, 2):
        pair: dict[str, Any] = {"a": a.label, "b": b.label}
        for m in MEASURES:
            ha, hb = a.hits(m), b.hits(m)
            per_task = {t: paired(ha, hb, [i for i in ids if task_of[i] == t]) for t in tasks}
            pair[m] = {"all": paired(ha, hb, ids), "tasks": per_task}
        out["pairs"].append(pair)
    return out


def format_markdown(result: dict[str, Any]) -> str:
    rows = [[r["label"], str(r["model"] or ""), str(r["answered"]), str(r["left_out"]),
             ", ".join(f"{k}: {v}" for k, v in r["named_images"].items())] for r in result["runs"]]  # fmt: skip
    lines = [f"# Paired comparison on {result['shared']} shared samples (mirg protocol)", "",
             md_table(["run", "model", "answered", "left out", "answers naming image"], rows), ""]  # fmt: skip
    for pair in result["pairs"]:
        a, b = pair["a"], pair["b"]
        for m, title in MEASURES.items():
            header = [
                "task",
                "n",
                f"{a} (95 % CI)",
                f"{b} (95 % CI)",
                f"only {a}",
                f"only {b}",
                "exact McNemar p",
            ]
            body = []
            for task, r in [*pair[m]["tasks"].items(), ("all", pair[m]["all"])]:
                body.append([f"**{task}**" if task == "all" else task, str(r["n"]), hits_text(r["hits_a"], r["n"]),
                             hits_text(r["hits_b"], r["n"]), str(r["only_a"]), str(r["only_b"]), f"{r['p']:.2g}"])  # fmt: skip
            lines += [f"## {a} vs {b}: {title}", "", md_table(header, body), ""]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="mirg eval folders (predictions.jsonl)")
    p.add_argument("--data", type=Path, default=None,
                   help="the data they were evaluated on (default: what each run's metrics.json names)")  # fmt: skip
    p.add_argument(
        "--json", type=Path, default=None, metavar="OUT", help="also write the results as JSON here"
    )


def run(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        raise MirgError("compare needs at least two runs")
    inputs: dict[str, Any] = {"a run": list(args.runs), "--data": args.data}
    if args.json:
        check_output_file(args.json, "--json", inputs)
    runs = load_runs(args.runs, args.data)
    if args.json:  # and not the data a run's metrics.json named
        check_output_file(args.json, "--json", {**inputs, "a run's data": [r.data for r in runs]})
    result = compare_runs(runs)
    print(format_markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0
