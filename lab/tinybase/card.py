"""The model card of a pretraining run (Markdown), from its final metrics and training state (the product reads
the metrics back with :func:`mirg.models.card.read_card_metrics`)."""

from __future__ import annotations

from typing import Any


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _expr(text: Any) -> str:
    """How the referring questions picked among the attribute subsets that identify their object."""
    from lab.tinybase.config import parse_expr_weights
    from lab.tinybase.perception import EXPR_NAMES

    weights = parse_expr_weights(text or "")
    if len(set(weights)) == 1:
        return "any identifying attribute subset, uniformly"
    return "attribute subsets weighted " + ", ".join(
        f"{n} {w:g}" for n, w in zip(EXPR_NAMES, weights, strict=True)
    )


def model_card(metrics: dict[str, Any], state: dict[str, Any]) -> str:
    cfg = metrics.get("config") or {}
    lines = [
        "# mirg tiny perception base",
        "",
        "A Qwen2.5-VL-architecture model trained "
        + ("from random weights" if not cfg.get("init") else "(continuing the runs under Lineage)")
        + " on single-image perception generated on the",
        "fly from MIG-Synth's renderer: referring-expression grounding, listing every object with its box,",
        "counting"
        + (
            " (and {} of the referring batches with {}-{} images per sample)".format(
                _pct(cfg["multi_image"]), *(cfg.get("multi_images") or (2, 3))
            )
            if cfg.get("multi_image")
            else ""
        )
        + " (see lab/README.md). It is the base the CPU demo's SFT and RL start from; answers follow",
        'the qwen2_5_vl dialect (`<answer>{"image": 1, "bbox_2d": [x1, y1, x2, y2]}</answer>`, pixels of the',
        f"processor-resized image). Trained on {cfg.get('image_size') or 112} px images.",
        "",
        _verdict(metrics),
        "",
        "## How it was made",
        "",
        f"- command: `{metrics.get('command')}`",
        f"- seed: {cfg.get('seed')}; steps: {metrics.get('step')}; batch size: {cfg.get('batch_size')}; "
        f"peak lr: {cfg.get('lr')}; "
        + (f"initialised from `{cfg['init']}`" if cfg.get("init") else f"preset: {cfg.get('size')}"),
        f"- vision stage: {cfg.get('vision_steps') or 0} steps (batch {cfg.get('vision_batch_size')}, lr "
        f"{cfg.get('vision_lr')}), {state.get('vision_elapsed', 0.0) / 60:.1f} min; final held-out box error "
        f"{_last(state.get('vision_curve'))}",
        f"- objects per image: {cfg.get('min_objects') or 1} to {cfg.get('max_objects') or 5}; questions per "
        f"referring sample: {_turns(cfg.get('refer_turns'))}; expressions: {_expr(cfg.get('expr_weights'))}",
        f"- training wall time (LLM stage): {metrics.get('train_seconds', 0) / 60:.1f} min "
        f"(started {state.get('started')})",
        f"- hardware: {metrics.get('hardware')}; code: mirg {metrics.get('code') or 'version not recorded'}",
        f"- parameters: {metrics.get('parameters'):,}",
        "",
        "## Held-out single-image referring grounding",
        "",
        f"Fresh scenes (seed + 1000003, never trained on), {_objects(cfg.get('max_objects') or 5)} per "
        f"{cfg.get('image_size') or 112} px "
        "image, MIG-Synth object sizes;",
        "greedy decoding. Acc@0.5: image 1 named and IoU >= 0.5. Other object: the box misses the named object",
        "but has IoU >= 0.5 with another one (the expression misread rather than nothing found).",
        "",
        "| prompt | n | Acc@0.5 | mean IoU | format | other object | Acc@0.5 by objects in the image |",
        "|---|---|---|---|---|---|---|",
    ]
    for style in ("short_prompt", "mirg_prompt"):
        m = metrics.get(f"refer_{style}")
        if m:
            lines.append(f"| {style.replace('_', ' ')} | {m['n']} | {_pct(m['acc@0.5'])} | {m['mean_iou']:.3f} | "
                         f"{_pct(m['format'])} | {_pct(m['other_object@0.5'])} | "
                         f"{m['acc@0.5_by_objects']} |")  # fmt: skip
    by_attrs = (metrics.get("refer_short_prompt") or {}).get("acc@0.5_by_expression")
    if by_attrs:
        lines += ["", "Acc@0.5 by the attributes the expression names (short prompt): "
                  + ", ".join(f"{k} {_pct(v)}" for k, v in by_attrs.items()) + "."]  # fmt: skip
    mm = metrics.get("refer_multi_image")
    if mm:
        lines += ["", "## Held-out multi-image referring grounding", "",
                  "Two or three fresh scenes per prompt (same seed, another stream), the named object in one of them and",
                  "its expression unique across all; mirg prompt, the question naming the image one time in three.",
                  "Acc@0.5: the right image named and IoU >= 0.5 in its pixels.", "",
                  f"- n {mm['n']}: Acc@0.5 {_pct(mm['acc@0.5'])}, right image {_pct(mm['image_acc'])}, mean IoU "
                  f"{mm['mean_iou']:.3f}",
                  f"- Acc@0.5 by the target's place (k/images): {mm.get('acc@0.5_by_place')}"]  # fmt: skip
    ms = metrics.get("migsynth")
    if ms:
        weak = "" if cfg.get("multi_image") else "; expected weak: the base has never seen several images"
        lines += ["", f"## Multi-image MIG-Synth ({ms.get('image_size') or 112} px images{weak})", ""]  # fmt: skip
        lines += _migsynth_table(ms)
    lineage = metrics.get("lineage") or []
    if lineage:
        lines += ["", "## Lineage", "",
                  "This run started from the checkpoint of the last run below, which started from the one before it",
                  "(paths as on the machine each run ran on):", ""]  # fmt: skip
        lines += [f"{i}. {_link(r)}" for i, r in enumerate(lineage, 1)]
        lines += [f"{len(lineage) + 1}. this run (the command above)"]
    evals = state.get("evals") or []
    if evals:
        multi = any("multi_image" in e for e in evals)
        lines += ["", "## Held-out Acc@0.5 during training (periodic, small sample)", "",
                  "| step | Acc@0.5 | mean IoU |" + (" multi-image Acc@0.5 |" if multi else ""),
                  "|---|---|---|" + ("---|" if multi else "")]  # fmt: skip
        lines += [f"| {e['step']} | {_pct(e['acc@0.5'])} | {e['mean_iou']:.3f} |"
                  + (f" {_pct(e['multi_image']['acc@0.5'])} |" if "multi_image" in e else (" |" if multi else ""))
                  for e in evals]  # fmt: skip
    lines.append("")
    return "\n".join(lines)


def _objects(cap: int) -> str:
    return "1 object" if cap == 1 else f"1-{cap} objects"


def _last(curve: Any) -> str:
    return f"{curve[-1][1]:.1f} px" if curve else "n/a"


def _verdict(metrics: dict[str, Any]) -> str:
    m = metrics.get("refer_short_prompt") or {}
    acc = m.get("acc@0.5", 0.0)
    cap = (metrics.get("config") or {}).get("max_objects") or 5
    base = metrics.get("refer_mean_box_baseline")
    floor = f" Always answering the held-out mean box scores {_pct(base['acc@0.5'])}." if base else ""
    if cap < 5:
        return (f"**Held-out Acc@0.5 on scenes of {_objects(cap)}: {_pct(acc)}.** The 90 % bar is for scenes of "
                f"1-5 objects (referring among distractors), so this run does not claim it.{floor}")  # fmt: skip
    verdict = "meets the 90 % bar" if acc >= 0.9 else "below the 90 % bar"
    return f"**Held-out single-image referring Acc@0.5: {_pct(acc)} ({verdict}).**{floor}"


def _migsynth_table(ms: dict[str, Any]) -> list[str]:
    """Per-task rows of the evaluation runner's metrics (already in percent)."""
    tasks = ms.get("tasks") or {}
    out = ["| task | n | image acc % | Acc@0.5 % | mIoU % |", "|---|---|---|---|---|"]
    for name, t in [*tasks.items(), ("average", ms.get("average") or {})]:
        if isinstance(t, dict) and "n" in t:
            out.append(
                f"| {name} | {t['n']} | {t.get('image_acc', 0.0):.1f} | {t.get('acc@0.5', 0.0):.1f} | "
                f"{t.get('miou', 0.0):.2f} |"
            )
    return out


def _turns(text: Any) -> str:
    from lab.tinybase.config import parse_turns

    lo, hi = parse_turns(text or "1:3")
    return (
        f"{lo} to {hi} (at most the objects in the image)"
        if lo != hi
        else f"{lo} (at most the objects in the image)"
    )


def lineage_entry(metrics: dict[str, Any], checkpoint: str) -> dict[str, Any]:
    """What a card says about an earlier run in a chain of ``--init`` runs, from that run's metrics.json."""
    cfg = metrics.get("config") or {}
    refer = metrics.get("refer_short_prompt") or {}
    return {
        "checkpoint": checkpoint,
        "command": metrics.get("command"),
        "code": metrics.get("code"),
        "hardware": metrics.get("hardware"),
        "steps": metrics.get("step"),
        "train_seconds": metrics.get("train_seconds"),
        "max_objects": cfg.get("max_objects") or 5,
        "image_size": cfg.get("image_size") or 112,
        "acc@0.5": refer.get("acc@0.5"),
        "n": refer.get("n"),
    }


def _link(r: dict[str, Any]) -> str:
    sha = f"; weights sha256 {r['weights_sha256'][:16]}" if r.get("weights_sha256") else ""
    if not r.get("command"):
        return f"`{r.get('checkpoint')}` (no metrics.json: how it was made is not recorded{sha})"
    minutes = (r.get("train_seconds") or 0) / 60
    acc = f"{_pct(r['acc@0.5'])} on {r.get('n')} held-out scenes of {_objects(r['max_objects'])}" if r.get(
        "acc@0.5") is not None else "no held-out figure"  # fmt: skip
    code = f", code {r['code']}" if r.get("code") else ""
    return (f"`{r['command']}` ({r.get('hardware')}{code}; {r.get('steps')} LLM steps, {minutes:.1f} min; "
            f"{r.get('image_size')} px; held-out Acc@0.5 {acc}{sha})")  # fmt: skip
