"""The demo report: ``report.md`` (PNG files beside it) and a self-contained ``report.html`` (PNGs embedded as
base64). Content: the configuration, a per-stage summary table and a per-task table (image-aware Acc@0.5, image
accuracy, mean IoU; percentages), training curves (SFT loss; RL total reward and each term) from the stages'
``metrics.jsonl``, a gallery of held-out test samples (ground truth green, prediction red, question and the
model's reasoning; successes and failures), and the ablation table when ``--ablation`` ran.
"""

from __future__ import annotations

import base64
import html
import json
import re
import statistics
from pathlib import Path
from typing import Any

STAGES = (("base", "base"), ("sft", "SFT"), ("rl", "SFT+RL"))
METRICS = (("acc@0.5", "Acc@0.5"), ("image_acc", "Image acc"), ("miou", "mIoU"))
RL_TERMS = (
    ("reward", "total reward"),
    ("rewards/format_reward/mean", "format"),
    ("rewards/image_reward/mean", "image"),
    ("rewards/object_reward/mean", "object"),
)
GT, PRED = (30, 170, 60), (220, 30, 30)


# --------------------------------------------------------------------------------------------------- tables
def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def stage_metrics(out: Path) -> dict[str, dict[str, Any]]:
    """{stage: metrics dict} for the evaluated stages (base, sft, rl)."""
    found = {}
    for key, _ in STAGES:
        m = _load(out / "eval" / key / "metrics.json")
        if m:
            found[key] = m
    return found


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summary_rows(
    metrics: dict[str, dict[str, Any]], hits: dict[str, dict[str, bool]] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Stages as rows; with ``hits`` (per stage, sample id -> Acc@0.5 success) a column with the hits and the
    95 % Wilson interval of their rate (the test set is small: read differences against it)."""
    from mirg.stats import wilson_interval

    header = (
        ["stage"] + [label for _, label in METRICS] + ["n"] + (["hits (Acc@0.5 95 % CI)"] if hits else [])
    )
    rows = []
    for key, label in STAGES:
        if key in metrics:
            avg = metrics[key]["average"]
            n = sum(t.get("n", 0) for t in metrics[key]["tasks"].values())
            row = [label] + [f"{avg.get(k, 0.0):.1f}" for k, _ in METRICS] + [str(n)]
            if hits:
                h = hits.get(key) or {}
                lo, hi = wilson_interval(sum(h.values()), len(h))
                row.append(f"{sum(h.values())}/{len(h)} ({100 * lo:.1f}-{100 * hi:.1f})" if h else "")
            rows.append(row)
    return header, rows


def stage_hits(out: Path, measure: str = "success") -> dict[str, dict[str, bool]]:
    """Per evaluated stage: sample id -> whether the answer counts for Acc@0.5 (``measure="success"``) or names
    the target image (``"right_image"``: what image accuracy counts)."""
    if measure not in ("success", "right_image"):
        raise ValueError(f"measure must be 'success' or 'right_image', not {measure!r}")
    found = {}
    for key, _ in STAGES:
        items = scored_items(out, key)
        if items:
            found[key] = {it["sample"].id: bool(it[measure]) for it in items}
    return found


def constant_image_line(out: Path) -> str:
    """What naming one fixed image for every test sample would score on image accuracy (the best such image,
    unweighted mean over tasks as in the tables): the floor an image accuracy has to beat; '' without test data."""
    from mirg.sample import read_samples

    path = out / "data" / "test" / "samples.jsonl"
    if not path.is_file():
        return ""
    by_task: dict[str, list[int]] = {}
    for s in read_samples(path):
        if s.target_image is not None:
            by_task.setdefault(s.task, []).append(s.target_image)
    if not by_task:
        return ""
    images = sorted({k for v in by_task.values() for k in v})

    def score(k: int) -> float:
        return 100 * statistics.fmean(sum(t == k for t in v) / len(v) for v in by_task.values())

    best = max(images, key=lambda k: (score(k), -k))
    return (f"Naming Image-{best} for every sample (the best fixed answer on this test set) scores image accuracy "
            f"{score(best):.1f}: image accuracy means something only above that.")  # fmt: skip


def paired_lines(hits: dict[str, dict[str, bool]]) -> list[str]:
    """One line per pair of stages (each later stage against each earlier one): the samples only one of them gets
    right (Acc@0.5) and the exact two-sided McNemar p of that split (the stages answer the same test samples)."""
    from itertools import combinations

    from mirg.stats import sign_test

    labels = dict(STAGES)
    keys = [k for k, _ in STAGES if k in hits]
    lines = []
    for a, b in combinations(keys, 2):
        common = hits[a].keys() & hits[b].keys()
        only_b = sum(hits[b][i] and not hits[a][i] for i in common)
        only_a = sum(hits[a][i] and not hits[b][i] for i in common)
        lines.append(
            f"{labels[b]} vs {labels[a]} on the same {len(common)} samples: right only for {labels[b]} {only_b}, "
            f"only for {labels[a]} {only_a}; exact McNemar p = {sign_test(only_a, only_b):.2g}"
        )
    return lines


def task_rows(metrics: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Tasks as rows; for each stage one cell 'Acc@0.5 / image acc / mIoU'."""
    stages = [(k, label) for k, label in STAGES if k in metrics]
    header = ["task", "n"] + [f"{label}: Acc@0.5 / img / mIoU" for _, label in stages]
    if not stages:
        return header, []
    first = metrics[stages[0][0]]
    rows = []
    for task in [*first["tasks"], "AVG"]:
        cells = [task, str(first["tasks"][task].get("n", "")) if task != "AVG" else ""]
        for k, _ in stages:
            t = metrics[k]["average"] if task == "AVG" else metrics[k]["tasks"].get(task, {})
            cells.append(" / ".join(f"{t.get(m, 0.0):.1f}" for m, _ in METRICS))
        rows.append(cells)
    return header, rows


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


# ---------------------------------------------------------------------------------------------------- plots
def _smooth(values: list[float], k: int) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def plot_curves(out: Path, plots: Path) -> list[tuple[str, Path]]:
    """SFT loss and RL reward terms as PNGs; returns [(title, path)] for the plots that had data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mirg.training.metrics import read_metrics

    plots.mkdir(parents=True, exist_ok=True)
    made = []
    sft = [r for r in read_metrics(out / "sft") if r.get("loss") is not None]
    if sft:
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
        steps, loss = [r["step"] for r in sft], [r["loss"] for r in sft]
        ax.plot(steps, loss, color="#bbbbbb", lw=1, label="per step")
        ax.plot(steps, _smooth(loss, max(1, len(loss) // 20)), color="#1f77b4", lw=2, label="smoothed")
        ax.set(xlabel="step", ylabel="loss", title="SFT training loss")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        path = plots / "sft_loss.png"
        fig.savefig(path)
        plt.close(fig)
        made.append(("SFT loss", path))
    rl = [r for r in read_metrics(out / "rl") if r.get("reward") is not None]
    if rl:
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
        steps = [r["step"] for r in rl]
        k = max(1, len(rl) // 10)
        for key, label in RL_TERMS:
            values = [r.get(key) for r in rl]
            if any(v is None for v in values):
                continue
            ax.plot(steps, _smooth(values, k), lw=2.5 if key == "reward" else 1.5, label=label)
        ax.set(xlabel="step", ylabel=f"mean reward (moving average of {k})", title="GRPO rewards")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = plots / "rl_rewards.png"
        fig.savefig(path)
        plt.close(fig)
        made.append(("RL rewards", path))
    return made


# -------------------------------------------------------------------------------------------------- gallery
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.S)


def reasoning_of(raw: str) -> str:
    m = _THINK.search(raw or "")
    return (m.group(1) if m else raw or "").strip()


def draw_sample(images: list[Any], target: int | None, gt_box: Any, chosen: int | None, pred_box: Any,
                panel_height: int = 160) -> Any:  # fmt: skip
    """Images side by side; ground truth (target image frame and box) green, prediction red."""
    from PIL import Image, ImageDraw

    pad, label_h = 10, 16
    panels = [im.convert("RGB").resize((max(1, round(im.width * panel_height / im.height)), panel_height))
              for im in images]  # fmt: skip
    width = sum(p.width for p in panels) + pad * (len(panels) + 1)
    canvas = Image.new("RGB", (width, panel_height + 2 * pad + label_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = pad
    for k, p in enumerate(panels, start=1):
        y = pad + label_h
        canvas.paste(p, (x, y))
        tags = (["target"] if k == target else []) + (["predicted"] if k == chosen else [])
        draw.text((x, pad), f"Image-{k}" + (f" ({', '.join(tags)})" if tags else ""), fill=(0, 0, 0))
        for is_k, box, color, w in ((k == target, gt_box, GT, 3), (k == chosen, pred_box, PRED, 2)):
            if is_k:
                draw.rectangle(
                    (x - w, y - w, x + p.width + w - 1, y + p.height + w - 1), outline=color, width=1
                )
                if box is not None:
                    bx = [v * s for v, s in zip(box, (p.width, p.height, p.width, p.height), strict=True)]
                    draw.rectangle((x + bx[0], y + bx[1], x + bx[2], y + bx[3]), outline=color, width=w)
        x += p.width + pad
    return canvas


def scored_items(out: Path, stage: str) -> list[dict[str, Any]]:
    """``eval/<stage>``'s answers by sample id: the sample, the prediction record, the image-aware IoU,
    ``right_image`` and ``success`` (right image, IoU >= 0.5: what Acc@0.5 counts); [] when the stage was not
    evaluated."""
    from mirg.boxes import iou
    from mirg.sample import read_samples

    pred_path = out / "eval" / stage / "predictions.jsonl"
    if not pred_path.is_file():
        return []
    samples = {s.id: s for s in read_samples(out / "data" / "test" / "samples.jsonl")}
    preds = [json.loads(line) for line in pred_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    preds.sort(key=lambda p: p["id"])
    items = []
    for p in preds:
        s = samples.get(p["id"])
        if s is None:
            continue
        right_image = p.get("pred_image") == s.target_image
        score = (
            iou(p["pred_box"], s.target_box) if right_image and p.get("pred_box") and s.target_box else 0.0
        )
        items.append(
            {
                "sample": s,
                "pred": p,
                "iou": score,
                "right_image": right_image,
                "success": right_image and score >= 0.5,
            }
        )
    return items


def pick_gallery(out: Path, stage: str, per_kind: int) -> list[dict[str, Any]]:
    """Successes (right image, IoU >= 0.5) and failures from ``eval/<stage>``, spread over tasks."""
    items = scored_items(out, stage)
    chosen: list[dict[str, Any]] = []
    for kind in (True, False):
        by_task: dict[str, list[dict[str, Any]]] = {}
        for it in items:
            if it["success"] == kind:
                by_task.setdefault(it["sample"].task, []).append(it)
        picked: list[dict[str, Any]] = []
        while len(picked) < per_kind and any(by_task.values()):  # round-robin over tasks
            for task in list(by_task):
                if by_task[task] and len(picked) < per_kind:
                    picked.append(by_task[task].pop(0))
        chosen += picked
    return chosen


def render_gallery(out: Path, stage: str, per_kind: int, folder: Path) -> list[dict[str, Any]]:
    from mirg.images import open_images

    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    root = out / "data" / "test"
    for n, it in enumerate(pick_gallery(out, stage, per_kind)):
        s, p = it["sample"], it["pred"]
        im = draw_sample(open_images(s.images, root), s.target_image, s.target_box, p.get("pred_image"),
                         p.get("pred_box"))  # fmt: skip
        path = folder / f"{'success' if it['success'] else 'failure'}-{n:02d}-{s.id}.png"
        im.save(path)
        entries.append({
            "path": path, "id": s.id, "task": s.task, "success": it["success"], "iou": it["iou"],
            "question": s.question, "reasoning": reasoning_of(p.get("raw_output", "")),
            "target_image": s.target_image, "pred_image": p.get("pred_image"), "parse_error": p.get("parse_error"),
        })  # fmt: skip
    return entries


# ---------------------------------------------------------------------------------------------------- write
def _missing_kinds(gallery: list[dict[str, Any]]) -> str:
    kinds = {e["success"] for e in gallery}
    if not gallery:
        return "(no predictions)"
    if True not in kinds:
        return "No test sample was a success (right image and IoU >= 0.5) in this run."
    if False not in kinds:
        return "No test sample was a failure in this run."
    return ""


def _caption(e: dict[str, Any]) -> str:
    verdict = "success" if e["success"] else "failure"
    pred = f"Image-{e['pred_image']}" if e["pred_image"] else "no parsable answer"
    return f"{verdict} — {e['task']} `{e['id']}`: target Image-{e['target_image']}, predicted {pred}, IoU {e['iou']:.2f}"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _img64(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.warn{background:#fee;border:1px solid #c00;padding:.6em}
.card{border:1px solid #ddd;margin:1em 0;padding:.6em}.card pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}
.ok{color:#1a7f37}.bad{color:#c00}"""


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
            "1-5-object scenes (docs/pretraining.md).")  # fmt: skip


def write_report(
    out: str | Path, summary: dict[str, Any], ablation: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``out/report.md`` and ``out/report.html``; returns their paths."""
    out = Path(out)
    metrics = stage_metrics(out)
    plots = plot_curves(out, out / "plots")
    per_kind = int(summary.get("settings", {}).get("gallery_per_kind", 4))
    gallery = render_gallery(out, "rl", per_kind, out / "gallery")
    hits = stage_hits(out)
    sum_h, sum_r = summary_rows(metrics, hits)
    paired = paired_lines(hits)
    floor = constant_image_line(out)
    if floor:
        paired.append(floor)
    task_h, task_r = task_rows(metrics)
    abl = ablation_rows(ablation) if ablation else None
    config = json.dumps(
        {k: summary.get(k) for k in ("settings", "base", "device", "stage_seconds")}, indent=1
    )

    md = ["# mirg demo report", ""]
    if summary.get("warning"):
        md += [f"> **WARNING: {summary['warning']}.** The base model is a random tiny model.", ""]
    note = base_note(summary.get("base") or {})
    if note:
        md += [f"> {note}", ""]
    md += ["Held-out MIG-Synth test set, mirg protocol (image-aware: a box counts only in the right image); "
           "percentages, AVG = unweighted mean over tasks.", "", "## Stages", "", _md_table(sum_h, sum_r), "",
           *[f"- {line}" for line in paired], *([""] if paired else []),
           "## Per task (Acc@0.5 / image accuracy / mean IoU)", "", _md_table(task_h, task_r), ""]  # fmt: skip
    if abl:
        md += ["## Ablation (same data and per-stage budget; training seeds " +
               ", ".join(map(str, ablation["seeds"])) + ")", "", _md_table(*abl), ""]  # fmt: skip
    md += ["## Training curves", ""]
    for title, p in plots:
        md += [f"![{title}]({p.relative_to(out).as_posix()})", ""]
    if not plots:
        md += ["(no training metrics)"]
    md += ["", "## Gallery (SFT+RL on held-out test samples; green: ground truth, red: prediction)", ""]
    missing = _missing_kinds(gallery)
    if missing:
        md += [missing, ""]
    for e in gallery:
        md += [f"### {_caption(e)}", "", f"![{e['id']}]({e['path'].relative_to(out).as_posix()})", "",
               f"**Question:** {e['question']}", "", "**Model reasoning:**", "", "```",
               e["reasoning"] or "(none)", "```", ""]  # fmt: skip
    md += ["## Configuration", "", "```json", config, "```", ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")

    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>mirg demo report</title><style>{CSS}</style>"
         "</head><body><h1>mirg demo report</h1>"]  # fmt: skip
    if summary.get("warning"):
        h.append(f"<p class='warn'><b>WARNING: {html.escape(summary['warning'])}.</b> "
                 "The base model is a random tiny model.</p>")  # fmt: skip
    if note:
        h.append(f"<p>{html.escape(note)}</p>")
    h += ["<p>Held-out MIG-Synth test set, mirg protocol (image-aware); percentages, AVG = unweighted mean over "
          "tasks.</p>", "<h2>Stages</h2>", _html_table(sum_h, sum_r),
          *([f"<ul>{''.join(f'<li>{html.escape(x)}</li>' for x in paired)}</ul>"] if paired else []),
          "<h2>Per task (Acc@0.5 / image accuracy / mean IoU)</h2>", _html_table(task_h, task_r)]  # fmt: skip
    if abl:
        h += [
            f"<h2>Ablation (training seeds {', '.join(map(str, ablation['seeds']))})</h2>",
            _html_table(*abl),
        ]  # type: ignore[index]
    h.append("<h2>Training curves</h2>")
    h += [f"<img alt='{html.escape(t)}' src='{_img64(p)}'>" for t, p in plots] or [
        "<p>(no training metrics)</p>"
    ]
    h.append("<h2>Gallery (SFT+RL; green: ground truth, red: prediction)</h2>")
    if missing:
        h.append(f"<p>{html.escape(missing)}</p>")
    for e in gallery:
        cls = "ok" if e["success"] else "bad"
        h.append(f"<div class='card'><h3 class='{cls}'>{html.escape(_caption(e).replace('`', ''))}</h3>"
                 f"<img alt='{html.escape(e['id'])}' src='{_img64(e['path'])}'>"
                 f"<p><b>Question:</b> {html.escape(e['question'])}</p><p><b>Model reasoning:</b></p>"
                 f"<pre>{html.escape(e['reasoning'] or '(none)')}</pre></div>")  # fmt: skip
    h += ["<h2>Configuration</h2>", f"<pre>{html.escape(config)}</pre></body></html>"]
    html_path = out / "report.html"
    html_path.write_text("\n".join(h), encoding="utf-8")
    return {"md": md_path, "html": html_path}
