"""``mirg eval``: batched greedy generation over Samples or MIG-Bench, resumable, then mirg-protocol scoring.

Outputs in ``out/``:

* ``predictions.jsonl`` — one line per sample as it is generated: ``id``, ``task``, ``raw_output``,
  ``pred_image`` (1-based|null), ``pred_box`` (normalized [0, 1] of the original image|null), ``parse_error``,
  ``seconds`` (the sample's share of its batch's generation time). A rerun skips ids already there, but only
  when ``mirg-run.json`` shows the same model, data, images and generation settings (:mod:`mirg.outputs`);
  the folder is locked while a run writes to it.
* ``metrics.json`` / ``metrics.md`` — :func:`mirg.scoring.score` with the ``mirg`` protocol, plus a ``run`` block.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mirg.answers import Answer, Dialect
from mirg.errors import ImageError, MirgError, not_found
from mirg.evaluation.backends import Generation, Request, TransformersBackend, VLLMBackend, vllm_available
from mirg.evaluation.writer import PredictionsWriter
from mirg.images import check_images_exist, image_size, open_images, resolve
from mirg.migbench import load_samples
from mirg.outputs import (
    check_out_dir,
    file_fingerprint,
    files_fingerprint,
    model_fingerprint,
    open_run,
    relative_path,
)
from mirg.predictions import PRED_BOX_LIMIT
from mirg.prompting import resized_size
from mirg.sample import Sample


def parse_generation(sample: Sample, gen: Generation, dialect: Dialect) -> dict[str, Any]:
    """The parsed fields of a prediction record: pred_image, pred_box (normalized), parse_error."""
    res = dialect.parse(gen.text, strict=False)
    if not isinstance(res, Answer):
        return {"pred_image": None, "pred_box": None, "parse_error": res.reason}
    image = res.image
    if image is None and sample.num_images == 1:
        image = 1
    in_range = image is not None and 1 <= image <= sample.num_images
    wh = gen.resized_wh[image - 1] if in_range else None  # type: ignore[operator]
    box = None
    if dialect.coords != "pixels" or wh is not None:
        box = [round(float(v), 6) for v in dialect.to_normalized(res.box, wh)]
        if not all(-PRED_BOX_LIMIT <= v <= PRED_BOX_LIMIT for v in box):  # far outside: a miss, never huge
            return {"pred_image": image, "pred_box": None, "parse_error": "box far outside the image"}
    reason = dialect.check_answer(Answer(image, res.box), sample.num_images, wh) if in_range else ""
    if image is None:
        reason = "no image index"
    elif not in_range:
        reason = f"image {image} out of range 1..{sample.num_images}"
    return {"pred_image": image, "pred_box": box, "parse_error": reason or None}


def _length_key(sample: Sample, root: Path, processor: Any) -> int:
    """Approximate prompt length in tokens (image tokens + question), for grouping similar lengths."""
    tokens = len(sample.question) // 3
    for p in sample.images:
        try:
            w, h = resized_size(image_size(p, root), processor)
            tokens += (w // 28) * (h // 28)
        except ImageError:
            pass  # opening it for real later gives the clear error
    return tokens


def make_batches(
    samples: Sequence[Sample], batch_size: int, key: Callable[[Sample], int]
) -> list[list[Sample]]:
    """Batches of similar prompt length (longest first, so memory trouble shows at once); order is stable."""
    order = sorted(samples, key=lambda s: -key(s))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def make_backend(name: str, loaded: Any, max_new_tokens: int) -> Any:
    """The generation backend ``name`` (``auto`` is resolved before: the run's manifest records the choice)."""
    if name == "transformers":
        return TransformersBackend(loaded, max_new_tokens=max_new_tokens)
    if name == "vllm":
        return VLLMBackend(loaded.path, loaded.processor, loaded.dialect, max_new_tokens=max_new_tokens)
    raise MirgError(f"unknown backend {name!r}; choose auto, transformers or vllm")


OUTPUTS = ("predictions.jsonl", "metrics.json", "metrics.md")


def evaluate(
    model: Any,
    data: str | Path,
    out: str | Path,
    *,
    image_root: str | Path | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    max_new_tokens: int = 256,
    backend: str = "auto",
    device: str | None = None,
    dtype: str | None = None,
    progress: bool = True,
    after_batch: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` (a checkpoint folder or a :class:`~mirg.models.loading.LoadedModel`) on ``data``, a
    Sample JSONL or a MIG-Bench JSON whose image paths are relative to ``image_root`` (default: its folder).

    Resumes from ``out/predictions.jsonl`` when its manifest matches (else MirgError; ``overwrite`` starts
    afresh). Returns the metrics dict (also written to ``out/metrics.json`` and ``out/metrics.md``).
    ``after_batch(n_written)`` is called after each batch.
    """
    from tqdm.auto import tqdm

    from mirg.models.loading import LoadedModel, choose_device_dtype, load_model

    if batch_size < 1:
        raise MirgError("--batch-size must be at least 1")
    if max_new_tokens < 1:
        raise MirgError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if not Path(data).is_file():
        raise not_found("data file", data)
    samples = load_samples(data)
    root = Path(image_root) if image_root is not None else Path(data).parent
    all_images = [resolve(p, root) for s in samples for p in s.images]
    if limit is not None:
        samples = samples[: max(0, limit)]
    if not samples:
        raise MirgError(f"no samples to evaluate in {data}")
    check_images_exist([p for s in samples for p in s.images], root)
    for p in dict.fromkeys(p for s in samples for p in s.images):
        image_size(p, root)  # headers only: an unreadable or oversized image fails before the model loads
    model_path = getattr(model, "path", model)  # a LoadedModel or a checkpoint folder
    out = check_out_dir(out, inputs={"--data": data, "--model": model_path})

    # what decides the predictions (the run's manifest): model, data and images, generation settings
    if isinstance(model, LoadedModel):
        dev, dt = model.device, model.dtype
    else:
        dev, dt = choose_device_dtype(device, dtype)
    if not Path(model_path).is_dir():
        raise not_found("model directory", model_path, folder=True)
    if backend == "auto":
        backend = "vllm" if vllm_available() and str(dev).startswith("cuda") else "transformers"
    settings = {
        "model": model_fingerprint(model_path),
        "data": file_fingerprint(data),
        "images": files_fingerprint(all_images, out),
        "max_new_tokens": max_new_tokens,
        "backend": backend,
        "device": str(getattr(dev, "type", dev)),
        "dtype": str(dt).removeprefix("torch."),
    }
    with (
        open_run(out, "eval", settings, outputs=OUTPUTS, overwrite=overwrite),
        PredictionsWriter(out / "predictions.jsonl") as writer,
    ):
        todo = [s for s in samples if s.id not in writer.done]
        loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
        gen_backend = make_backend(backend, loaded, max_new_tokens)
        t_start = time.perf_counter()
        generated = 0
        batches = make_batches(todo, batch_size, lambda s: _length_key(s, root, loaded.processor))
        desc = f"eval ({len(samples) - len(todo)} done before)" if len(todo) < len(samples) else "eval"
        with tqdm(
            total=len(todo), desc=desc, unit="sample", smoothing=0.1, disable=not (progress and todo)
        ) as bar:
            for batch in batches:
                requests = [Request(s, open_images(s.images, root)) for s in batch]
                t0 = time.perf_counter()
                gens = gen_backend.generate(requests)
                share = (time.perf_counter() - t0) / len(batch)
                records = []
                for s, g in zip(batch, gens, strict=True):
                    rec = {"id": s.id, "task": s.task, "raw_output": g.text}
                    rec.update(parse_generation(s, g, loaded.dialect))
                    rec["seconds"] = round(share, 6)
                    records.append(rec)
                writer.write(records)
                generated += len(batch)
                bar.update(len(batch))
                if after_batch is not None:
                    after_batch(generated)
        elapsed = time.perf_counter() - t_start

        metrics = score_predictions(samples, writer.done, loaded.dialect)
        metrics["run"] = {
            "model": str(loaded.path),
            "family": loaded.family,
            "data": relative_path(Path(data).resolve(), out.resolve()),  # found from any working directory
            "samples": len(samples),
            "generated_this_run": generated,
            "resumed": len(samples) - len(todo),
            "backend": gen_backend.name,
            "batch_size": batch_size,
            "max_new_tokens": max_new_tokens,
            "seconds_this_run": round(elapsed, 3),
            "samples_per_second": round(generated / elapsed, 3) if generated and elapsed > 0 else None,
        }
        write_metrics(metrics, out)
    return metrics


def score_predictions(
    samples: list[Sample], records: dict[str, dict[str, Any]], dialect: Dialect
) -> dict[str, Any]:
    """Score the prediction records of ``samples`` (by id) with the ``mirg`` protocol."""
    from mirg.scoring import Prediction, score

    preds = []
    for s in samples:
        r = records.get(s.id)
        if r is None:
            continue
        box = tuple(r["pred_box"]) if r.get("pred_box") is not None else None
        preds.append(Prediction(s.id, r["raw_output"], r.get("pred_image"), box, r.get("parse_error")))  # type: ignore[arg-type]
    return score(samples, preds, protocol="mirg", dialect=dialect)


def write_metrics(metrics: dict[str, Any], out: Path) -> None:
    from mirg.scoring import format_markdown

    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    run = metrics["run"]
    header = f"# Evaluation: {run['model']}\n\nData: `{run['data']}`, {run['samples']} samples.\n\n"
    (out / "metrics.md").write_text(header + format_markdown(metrics), encoding="utf-8")
