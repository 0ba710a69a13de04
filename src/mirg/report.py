"""``mirg report RUN... --out DIR``: a report on any ``mirg eval`` folders, as ``report.md`` (PNGs beside it) and one
self-contained ``report.html`` (PNGs inlined as base64). ``mirg demo`` writes its report with the same code.
Its sections (runs, per task, training curves, gallery, configuration) are described in docs/report.md; items are
scored by :mod:`mirg.scoring` through :mod:`mirg.runs`.

    mirg report runs/demo/eval/sft runs/demo/eval/rl --training runs/demo/sft runs/demo/rl --out runs/rep
    mirg report runs/mig7b --image-root MIG-Bench/ --out runs/mig7b-report        # a MIG-Bench run
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import statistics
from collections.abc import Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

from mirg.compare import paired_lines
from mirg.errors import ImageError, MirgError
from mirg.images import open_images
from mirg.migbench import ordered_tasks
from mirg.outputs import check_out_dir
from mirg.runs import EvalRun, load_runs
from mirg.sample import Sample
from mirg.scoring import md_table
from mirg.stats import hits_text

METRICS = (("acc@0.5", "Acc@0.5"), ("image_acc", "Image acc"), ("miou", "mIoU"))
RL_TERMS = (
    ("reward", "total reward"),
    ("rewards/format_reward/mean", "format"),
    ("rewards/image_reward/mean", "image"),
    ("rewards/object_reward/mean", "object"),
)
GT, PRED = (30, 170, 60), (220, 30, 30)
PROTOCOL = ("mirg protocol (image-aware: a box counts only in the right image); percentages, AVG = unweighted "
            "mean over tasks; hits pooled over samples, with their 95 % Wilson interval.")  # fmt: skip


# --------------------------------------------------------------------------------------------------- tables
def html_table(header: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def hits_cell(hits: dict[str, bool]) -> str:
    """'k/n (lo-hi)': hits and the 95 % Wilson interval of their rate in percent ('n/a' for none)."""
    return hits_text(sum(hits.values()), len(hits)) if hits else "n/a"


def run_rows(runs: Sequence[EvalRun], row_name: str = "run") -> tuple[list[str], list[list[str]]]:
    """Runs as rows: the task averages, n, and the Acc@0.5 and image hits with their intervals."""
    header = [
        row_name,
        *(label for _, label in METRICS),
        "n",
        "hits (Acc@0.5 95 % CI)",
        "image hits (95 % CI)",
    ]
    rows = []
    for r in runs:
        rows.append([r.label, *_cells(r.metrics()["average"], bool(r.hits("image"))), str(len(r.items)),
                     hits_cell(r.hits("acc")), hits_cell(r.hits("image"))])  # fmt: skip
    return header, rows


def _cells(m: dict[str, Any], image_known: bool) -> list[str]:
    """The METRICS of one scoring dict; image accuracy 'n/a' where no item had a known target image."""
    return [f"{m.get(k, 0.0):.1f}" if image_known or k != "image_acc" else "n/a" for k, _ in METRICS]


def task_rows(runs: Sequence[EvalRun]) -> tuple[list[str], list[list[str]]]:
    """Tasks as rows; for each run 'Acc@0.5 / image acc / mIoU' and its Acc@0.5 hits with their interval."""
    header = ["task"] + [f"{r.label}: {x}" for r in runs for x in ("Acc@0.5 / img / mIoU", "hits (95 % CI)")]
    metrics = [r.metrics() for r in runs]
    tasks = ordered_tasks({t for m in metrics for t in m["tasks"]})
    rows = []
    for task in [*tasks, "AVG"]:
        cells = [task]
        for r, m in zip(runs, metrics, strict=True):
            t = m["average"] if task == "AVG" else m["tasks"].get(task, {})
            ids = {it.id for it in r.items if task in ("AVG", it.task)}
            hits = {i: h for i, h in r.hits("acc").items() if i in ids}
            cells += [" / ".join(_cells(t, bool(ids & r.hits("image").keys()))), hits_cell(hits)]
        rows.append(cells)
    return header, rows


def constant_image_line(samples: Sequence[Sample]) -> str:
    """What naming one fixed image for every sample would score on image accuracy (the best such image,
    unweighted mean over tasks as in the tables): the floor an image accuracy has to beat; '' without targets."""
    by_task: dict[str, list[int]] = {}
    for s in samples:
        if s.target_image is not None:
            by_task.setdefault(s.task, []).append(s.target_image)
    if not by_task:
        return ""

    def score(k: int) -> float:
        return 100 * statistics.fmean(sum(t == k for t in v) / len(v) for v in by_task.values())

    best = max({k for v in by_task.values() for k in v}, key=lambda k: (score(k), -k))
    return (f"Naming Image-{best} for every sample (the best fixed answer on this test set) scores image accuracy "
            f"{score(best):.1f}: image accuracy means something only above that.")  # fmt: skip


# ---------------------------------------------------------------------------------------------------- plots
def _smooth(values: list[float], k: int) -> list[float]:
    """Trailing moving average over (up to) ``k`` values."""
    return [sum(w) / len(w) for w in (values[max(0, i + 1 - k) : i + 1] for i in range(len(values)))]


def plot_training(training: Sequence[tuple[str, Path]], plots: Path) -> list[tuple[str, Path]]:
    """One PNG per training folder with a ``metrics.jsonl``: GRPO reward terms when it logged rewards, else the
    SFT loss. Returns [(title, path)] for the folders that had data."""
    if not training:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mirg.training.metrics import read_metrics

    made = []
    for label, folder in training:
        recs = read_metrics(folder)
        rl = [r for r in recs if r.get("reward") is not None]
        sft = [r for r in recs if r.get("loss") is not None]
        if not (rl or sft):
            continue
        plots.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(5.4, 3.0), dpi=100)
        if rl:
            steps, k = [r["step"] for r in rl], max(1, len(rl) // 10)
            for key, name in RL_TERMS:
                values = [r.get(key) for r in rl]
                if all(v is not None for v in values):
                    ax.plot(steps, _smooth(values, k), lw=2.5 if key == "reward" else 1.5, label=name)
            ax.set(
                xlabel="step", ylabel=f"mean reward (moving average of {k})", title=f"{label}: GRPO rewards"
            )
            ax.legend(fontsize=8)
            title, kind = f"{label} rewards", "rewards"
        else:
            steps, loss = [r["step"] for r in sft], [r["loss"] for r in sft]
            ax.plot(steps, loss, color="#bbbbbb", lw=1, label="per step")
            ax.plot(steps, _smooth(loss, max(1, len(loss) // 20)), color="#1f77b4", lw=2, label="smoothed")
            ax.set(xlabel="step", ylabel="loss", title=f"{label}: training loss")
            ax.set_yscale("log")
            ax.legend()
            title, kind = f"{label} loss", "loss"
        fig.tight_layout()
        path = plots / f"{re.sub(r'[^A-Za-z0-9.-]+', '_', label).lower()}_{kind}.png"
        fig.savefig(path)
        plt.close(fig)
        made.append((title, path))
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
                    # an inverted box or one off the image (seen from small models) is drawn clipped to it
                    x1, x2, y1, y2 = (min(max(v, 0.0), 1.0) for v in (*sorted(box[::2]), *sorted(box[1::2])))
                    bx = [x1 * p.width, y1 * p.height, x2 * p.width, y2 * p.height]
                    draw.rectangle((x + bx[0], y + bx[1], x + bx[2], y + bx[3]), outline=color, width=w)
        x += p.width + pad
    return canvas


def pick_gallery(run: EvalRun, per_kind: int) -> list[Any]:
    """Successes (Acc@0.5 hits) and failures, ``per_kind`` each, round-robin over tasks (id order within one)."""
    chosen: list[Any] = []
    for kind in (True, False):
        by_task: dict[str, list[Any]] = {}
        for it in sorted(run.items, key=lambda it: it.id):
            if (it.iou >= 0.5) == kind:
                by_task.setdefault(it.task, []).append(it)
        chosen += [it for row in zip_longest(*by_task.values()) for it in row if it is not None][:per_kind]
    return chosen


def render_gallery(run: EvalRun, per_kind: int, folder: Path) -> list[dict[str, Any]]:
    samples = {s.id: s for s in run.samples}
    entries = []
    for n, it in enumerate(pick_gallery(run, per_kind)):
        s, p = samples[it.id], run.preds[it.id]
        try:
            images = open_images(s.images, run.root)
        except ImageError as e:
            raise MirgError(f"{e} (gallery of {run.label}: pass --image-root, or --gallery 0)") from None
        folder.mkdir(parents=True, exist_ok=True)
        success = it.iou >= 0.5
        name = re.sub(r"[^\w.-]+", "_", s.id)[:80]  # file names stop at 255 bytes; the index keeps them apart
        path = folder / f"{'success' if success else 'failure'}-{n:02d}-{name}.png"
        draw_sample(images, s.target_image, s.target_box, it.pred_image, it.pred_box).save(path)
        entries.append({"path": path, "id": s.id, "task": s.task, "success": success, "iou": it.iou,
                        "question": s.question, "reasoning": reasoning_of(p.raw_output),
                        "target_image": s.target_image, "pred_image": it.pred_image})  # fmt: skip
    return entries


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
    target = f"Image-{e['target_image']}" if e["target_image"] else "unknown image"
    return f"{verdict} — {e['task']} `{e['id']}`: target {target}, predicted {pred}, IoU {e['iou']:.2f}"


# ---------------------------------------------------------------------------------------------------- write
def _img64(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td{white-space:nowrap}td:first-child,th:first-child{text-align:left}.warn{background:#fee;border:1px solid #c00;padding:.6em}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:.8em}.card h3{font-size:1em}
.card{border:1px solid #ddd;padding:.6em}.card pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}
.ok{color:#1a7f37}.bad{color:#c00}img{max-width:100%;vertical-align:top}"""


def write_report(
    out: str | Path,
    runs: Sequence[EvalRun],
    *,
    training: Sequence[tuple[str, Path]] = (),
    per_kind: int = 4,
    title: str = "mirg report",
    intro: str | None = None,
    row_name: str = "run",
    warnings: Sequence[str] = (),
    notes: Sequence[str] = (),
    tables: Sequence[tuple[str, list[str], list[list[str]]]] = (),
    config: Any = None,
) -> dict[str, Path]:
    """Write ``out/report.md`` (with ``plots/`` and ``gallery/``) and ``out/report.html``; returns their paths.
    ``tables`` are extra (heading, header, rows) sections after the per-task table (the demo's ablation);
    ``config`` defaults to each run's ``metrics.json`` ``run`` block."""
    if not runs:
        raise MirgError("report: no runs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_training(training, out / "plots")
    gallery = render_gallery(runs[-1], per_kind, out / "gallery") if per_kind > 0 else []
    sum_h, sum_r = run_rows(runs, row_name)
    lines = paired_lines({r.label: r.hits("acc") for r in runs})
    floor = constant_image_line(runs[0].samples)
    lines += [floor] if floor else []
    lines += [f"{r.label}: {r.unanswered} samples of {r.data} have no prediction (left out)." for r in runs
              if r.unanswered]  # fmt: skip
    tables = [("Per task (Acc@0.5 / image accuracy / mean IoU; Acc@0.5 hits)", *task_rows(runs)), *tables]
    if intro is None:
        datas = sorted({str(r.data) for r in runs})
        intro = f"Data: {', '.join(f'`{d}`' for d in datas)}; {PROTOCOL}"
    if config is None:
        config = {"runs": {r.label: {"folder": str(r.folder), **r.info} for r in runs},
                  "training": {label: str(folder) for label, folder in training}}  # fmt: skip
    config_text = json.dumps(config, indent=1)
    heading = f"{row_name[0].upper()}{row_name[1:]}s"
    g_title = f"Gallery ({runs[-1].label}; green: ground truth, red: prediction)"
    missing = _missing_kinds(gallery) if per_kind > 0 else "(not drawn)"

    md = [f"# {title}", ""]
    md += [x for w in warnings for x in (f"> **WARNING: {w}**", "")]
    md += [x for n in notes for x in (f"> {n}", "")]
    md += [intro, "", f"## {heading}", "", md_table(sum_h, sum_r), "", *[f"- {x}" for x in lines]]
    md += [""] if lines else []
    for t_title, t_h, t_r in tables:
        md += [f"## {t_title}", "", md_table(t_h, t_r), ""]
    md += ["## Training curves", ""]
    md += [x for t, p in plots for x in (f"![{t}]({p.relative_to(out).as_posix()})", "")] or [
        "(no training metrics)"
    ]
    md += ["", f"## {g_title}", ""] + ([missing, ""] if missing else [])
    for e in gallery:
        md += [f"### {_caption(e)}", "", f"![{e['id']}]({e['path'].relative_to(out).as_posix()})", "",
               f"**Question:** {e['question']}", "", "**Model reasoning:**", "", "```",
               e["reasoning"] or "(none)", "```", ""]  # fmt: skip
    md += ["## Configuration", "", "```json", config_text, "```", ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")

    esc = html.escape
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{CSS}</style>"
         f"</head><body><h1>{esc(title)}</h1>"]  # fmt: skip
    h += [f"<p class='warn'><b>WARNING: {esc(w)}</b></p>" for w in warnings]
    h += [f"<p>{esc(n)}</p>" for n in notes]
    h += [f"<p>{esc(intro.replace('`', ''))}</p>", f"<h2>{heading}</h2>", html_table(sum_h, sum_r),
          *([f"<ul>{''.join(f'<li>{esc(x)}</li>' for x in lines)}</ul>"] if lines else [])]  # fmt: skip
    for t_title, t_h, t_r in tables:
        h += [f"<h2>{esc(t_title)}</h2>", html_table(t_h, t_r)]
    h.append("<h2>Training curves</h2>")
    h += [f"<img alt='{esc(t)}' src='{_img64(p)}'>" for t, p in plots] or ["<p>(no training metrics)</p>"]
    h.append(f"<h2>{esc(g_title)}</h2>" + (f"<p>{esc(missing)}</p>" if missing else ""))
    h.append("<div class='gallery'>")
    for e in gallery:
        h.append(f"<div class='card'><h3 class='{'ok' if e['success'] else 'bad'}'>{esc(_caption(e).replace('`', ''))}"
                 f"</h3><img alt='{esc(e['id'])}' src='{_img64(e['path'])}'><p><b>Question:</b> {esc(e['question'])}"
                 f"</p><p><b>Model reasoning:</b></p><pre>{esc(e['reasoning'] or '(none)')}</pre></div>")  # fmt: skip
    h += ["</div><h2>Configuration</h2>", f"<pre>{esc(config_text)}</pre></body></html>"]
    html_path = out / "report.html"
    html_path.write_text("\n".join(h), encoding="utf-8")
    return {"md": md_path, "html": html_path}


# ------------------------------------------------------------------------------------------------------ CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="mirg eval folders (predictions.jsonl)")
    p.add_argument(
        "--out", required=True, type=Path, help="folder for report.md, report.html, plots/, gallery/"
    )
    p.add_argument("--training", nargs="+", type=Path, default=[], metavar="DIR",
                   help="SFT/RL output folders whose metrics.jsonl to plot")  # fmt: skip
    p.add_argument("--data", type=Path, default=None,
                   help="the data the runs were evaluated on (default: what each run's metrics.json names)")  # fmt: skip
    p.add_argument("--image-root", type=Path, default=None,
                   help="folder the data's image paths are relative to (MIG-Bench; default: the data file's folder)")  # fmt: skip
    p.add_argument("--gallery", type=int, default=4, metavar="N",
                   help="successes and failures each in the gallery, from the last run (0: none; default 4)")  # fmt: skip
    p.add_argument("--title", default="mirg report", help="the report's title")


def run(args: argparse.Namespace) -> int:
    for folder in args.training:
        if not (folder / "metrics.jsonl").is_file():
            raise MirgError(f"--training {folder}: no metrics.jsonl (an SFT or RL output folder has one)")
    if args.gallery < 0:
        raise MirgError(f"--gallery must be >= 0, got {args.gallery}")
    check_out_dir(args.out)
    runs = load_runs(args.runs, args.data, args.image_root)
    training = [(f.name, f) for f in args.training]
    paths = write_report(args.out, runs, training=training, per_kind=args.gallery, title=args.title)
    print(f"report: {paths['md']} and {paths['html']}")
    return 0
