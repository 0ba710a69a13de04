"""The pretraining loop: plain PyTorch (AdamW, warmup + cosine, grad clipping) over processor-built batches of
on-the-fly perception samples, with resumable checkpoints, progress + ETA, and periodic held-out metrics.

Layout of ``out``::

    model/          the model being trained (config, safetensors, tokenizer, processor); updated at each save
    state.pt        optimizer, step, elapsed training seconds, curves (with model/, enough to resume exactly)
    log.jsonl       one line per logged step and per evaluation
    final/          the finished checkpoint (written at the end), with metrics.json and MODEL_CARD.md

Data of step ``s`` is a pure function of ``(seed, s)`` and the schedule of ``s / steps``, so a run split by
interruptions (``--resume``) trains on exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from lab.tinybase.config import PretrainConfig, parse_grow
from lab.tinybase.data import batch_samples, heldout_multi, heldout_refer
from lab.tinybase.perception import DataConfig
from mirg.errors import MirgError

HELDOUT_SEED_OFFSET = 1_000_003
# the vision stage's head, kept next to a checkpoint (see Trainer.save_vision_head)
HEAD_FILE = "vision_head.safetensors"
# the shipped base's head lives in the lab (the package ships the checkpoint only): it is used for an --init
# checkpoint without a head of its own whose weights are exactly these (SHA-256 of model.safetensors)
SHIPPED_HEAD = Path(__file__).resolve().parent / "assets" / "tiny_base_vision_head.safetensors"
SHIPPED_WEIGHTS_SHA256 = "867aff796db98c67efbbe12a50e2086dc5f543c1840ca80daf4183c11266630b"


def head_file(checkpoint: str | Path) -> Path | None:
    """The vision head kept with ``checkpoint``: its own ``HEAD_FILE``, else the lab's copy of the shipped base's
    head when ``checkpoint`` holds the shipped base's weights, else None."""
    own = Path(checkpoint) / HEAD_FILE
    if own.is_file():
        return own
    weights = Path(checkpoint) / "model.safetensors"
    if weights.is_file() and SHIPPED_HEAD.is_file() and weights_sha256(weights) == SHIPPED_WEIGHTS_SHA256:
        return SHIPPED_HEAD
    return None


def data_workers(cfg: PretrainConfig, device_type: str) -> int:
    """Processes that build batches ahead of the training step: ``cfg.workers`` when given, else 0 on CPU (the
    cores are busy with the model), and ``min(8, cores - 1)`` on an accelerator, where rendering and tokenising
    on one core would leave the GPU idle. The batches are the same either way."""
    if cfg.workers is not None:
        return cfg.workers
    if device_type == "cpu":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def llm_batch(
    processor: Any, samples: Any, compact: bool = False, aux: bool = False, attn: bool = False
) -> Any:
    """The LLM stage's tensors for ``samples`` (:func:`~lab.tinybase.batching.collate`), with the vision
    head's targets under ``vision_targets`` when ``aux`` (``--vision-aux``) and the attention targets under
    ``attn_targets`` when ``attn`` (``--attn-aux``, :mod:`lab.tinybase.bind`)."""
    from lab.tinybase.batching import collate

    batch = collate(processor, samples, compact=compact)
    if aux:
        from lab.tinybase.vision import llm_targets

        batch["vision_targets"] = llm_targets(processor, samples, batch["image_grid_thw"])
    if attn:
        from lab.tinybase.bind import attn_targets

        batch["attn_targets"] = attn_targets(processor, samples, batch)
    return batch


def _llm_batch(
    processor: Any, seed: int, batch_size: int, data: DataConfig, steps: int, step: int, *, aux: bool = False,
    attn: bool = False,
) -> Any:  # fmt: skip
    return llm_batch(processor, batch_samples(seed, step, batch_size, data, step / steps), True, aux, attn)


def _vision_batch(processor: Any, seed: int, batch_size: int, data: DataConfig, step: int) -> Any:
    from lab.tinybase.vision import prepare, vision_samples

    return prepare(processor, vision_samples(seed, step, batch_size, data), compact=True)


class _Steps:
    """Map-style dataset over step numbers ``start..stop-1``: item ``i`` is ``fn(start + i)``."""

    def __init__(self, fn: Any, start: int, stop: int):
        self.fn, self.start, self.stop = fn, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> Any:
        return self.fn(self.start + i)


def prefetched(fn: Any, start: int, stop: int, workers: int) -> Any:
    """Iterator over ``fn(step)`` for ``step`` in ``start..stop-1``, in order: in this process (``workers`` 0) or
    built ahead by ``workers`` processes (torch's DataLoader; ``fn`` must be picklable, a partial of a
    module-level function). Batches are pure functions of the step, so both give the same data."""
    if workers == 0:
        return (fn(step) for step in range(start, stop))
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return iter(torch.utils.data.DataLoader(_Steps(fn, start, stop), batch_size=None, shuffle=False,
                                            num_workers=workers, prefetch_factor=4))  # fmt: skip


def lr_at(cfg: PretrainConfig, step: int, progress: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from ``lr`` to ``lr * min_lr_ratio`` over progress."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)


def _fmt_s(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def init_lineage(src: Path) -> list[dict[str, Any]]:
    """The chain of runs behind an ``--init`` checkpoint: its own lineage, then itself (from its metrics.json;
    a checkpoint without one is listed by path only)."""
    from lab.tinybase.card import lineage_entry
    from mirg.models.card import read_card_metrics

    metrics = read_card_metrics(src, f"--init {src}")
    digest = weights_sha256(src / "model.safetensors")
    if metrics is None:
        return [{"checkpoint": str(src), "weights_sha256": digest}]
    return [*(metrics.get("lineage") or []), {**lineage_entry(metrics, str(src)), "weights_sha256": digest}]


def weights_sha256(path: Path) -> str:
    """SHA-256 of a checkpoint's weights file: the card names the exact ``--init`` weights a run started from,
    so that a rerun can check it starts from the same ones (a path alone does not say which)."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def code_version() -> str:
    """mirg's version, with the git commit when the package runs from a checkout (for model cards; "-dirty" when
    the checkout has uncommitted changes)."""
    import subprocess

    import mirg

    version = mirg.__version__
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], cwd=Path(mirg.__file__).parent,
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} ({commit})" if commit else version


def _code_on_resume(recorded: str | None, now: str) -> str:
    """The code a run trained with: the version it started with (``code_version()`` then), followed by each
    different one it was resumed with. Recorded when training starts, not when the card is written, so a
    commit made while a long run trains does not pass for the code that ran it."""
    if not recorded:  # runs saved before it was recorded
        return f"{now} (at resume; the start was not recorded)"
    return recorded if recorded.endswith(now) else f"{recorded}, resumed with {now}"


class Trainer:
    """One pretraining run (fresh or resumed) in ``cfg.out``."""

    def __init__(self, cfg: PretrainConfig, resume: bool = False, log: Any = None):
        import torch

        from lab.tinybase.model import build_model_dir
        from mirg.models.loading import load_model

        self.cfg = cfg.validate()
        self.out = Path(cfg.out)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        state_path = self.out / "state.pt"
        if resume and state_path.is_file():
            self.state = torch.load(state_path, map_location="cpu", weights_only=True)
            saved = self.state["config"]
            self.state["code"] = _code_on_resume(self.state.get("code"), code_version())
            for k in ("size", "batch_size", "lr", "seed", "warmup", "vision_steps", "vision_lr",
                      "vision_batch_size", "max_objects", "image_size", "vision_aux", "vision_head", "attn_aux",
                      "attn_aux_heads", "attn_aux_at", "refer_turns", "multi_image", "expr_weights",
                      "min_objects"):  # fmt: skip
                if saved.get(k) != getattr(cfg, k):
                    self.log(f"resume: keeping the run's {k}={saved.get(k)!r} (given {getattr(cfg, k)!r})")
                    setattr(cfg, k, saved.get(k))
            if saved.get("steps") != cfg.steps:
                # the length may change on resume (shorten or extend a split run); the schedule follows from here
                self.log(
                    f"resume: run length changed from {saved.get('steps')} to {cfg.steps} steps; the schedule "
                    "follows the new length"
                )
                self.state.setdefault("length_changes", []).append(
                    {"at_step": self.state["step"], "steps": cfg.steps}
                )
            model_dir = self.out / "model"
            self.log(
                f"resuming {self.out} at step {self.state['step']} ({_fmt_s(self.state['elapsed'])} trained)"
            )
        else:
            if state_path.exists() or (self.out / "model").exists():
                raise MirgError(
                    f"{self.out} already holds a run; pass --resume to continue it or choose a new --out"
                )
            self.out.mkdir(parents=True, exist_ok=True)
            # Weights this run creates from torch's global RNG (a fresh vision head) follow --seed. Before this, an
            # --init run whose head did not fit (round fourteen's W: --grow-text) started its head unseeded.
            torch.manual_seed(cfg.seed)
            if cfg.init:
                src = Path(cfg.init)
                if not (src / "config.json").is_file() or not (src / "model.safetensors").is_file():
                    raise MirgError(f"--init {src}: not a checkpoint folder (config.json, model.safetensors)")
                model_dir = self.out / "model"
                shutil.copytree(
                    src, model_dir, ignore=shutil.ignore_patterns("*.md", "metrics.json", HEAD_FILE)
                )
                lineage = init_lineage(src)
                if cfg.grow_text is not None:
                    from lab.tinybase.grow import grow_text

                    grown = grow_text(model_dir, *parse_grow(cfg.grow_text), seed=cfg.seed)
                    self.log(
                        f"grew the text model from {grown['from_hidden']} x {grown['from_layers']} to "
                        f"{grown['hidden']} x {grown['layers']} (function-preserving)"
                    )
                if cfg.new_vision:
                    from lab.tinybase.grow import new_vision

                    swapped = new_vision(model_dir, cfg.new_vision, seed=cfg.seed)
                    self.log(
                        f"replaced the vision tower (merge {swapped['from_merge']}, width {swapped['from_width']}) "
                        f"by a new {cfg.new_vision} one (merge {swapped['merge']}, width {swapped['width']})"
                    )
            else:
                model_dir = build_model_dir(self.out / "model", cfg.size, cfg.seed)
            self.state = {"step": 0, "elapsed": 0.0, "curve": [], "evals": [], "optimizer": None,
                          "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "code": code_version(), "lineage": lineage if cfg.init else []}  # fmt: skip
            # a head trained on a replaced tower's tokens (--new-vision) means nothing here
            head = head_file(cfg.init) if cfg.init and not cfg.new_vision else None
            if head is not None and (cfg.vision_steps or cfg.vision_aux):
                from safetensors.torch import load_file

                self.state["vision_head"] = load_file(str(head))
        cfg.data = cfg.data_config()
        loaded = load_model(model_dir, device=cfg.device, dtype="float32")
        self.model, self.processor = loaded.model, loaded.processor
        from mirg.prompting import resized_size

        for px in cfg.data.image_sizes:  # answers are in rendered pixels: the processor must not resize
            if resized_size((px, px), self.processor) != (px, px):
                raise MirgError(
                    f"--image-size {px}: this model's processor resizes it to "
                    f"{resized_size((px, px), self.processor)}, so box answers would not be in image pixels; "
                    "use a multiple of patch size x merge size within the processor's pixel range"
                )
        self.model.train()
        self.workers = data_workers(cfg, self.model.device.type)
        if self.workers:
            self.log(f"building batches ahead in {self.workers} data worker processes")
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.95),
        )  # fmt: skip
        if self.state["optimizer"] is not None:
            self.opt.load_state_dict(self.state["optimizer"])
        self.heldout = heldout_refer(cfg.seed + HELDOUT_SEED_OFFSET, cfg.final_eval_samples, cfg.data)
        # periodic multi-image figures only when the run trains on several images (each costs ~3x a single one)
        self.heldout_multi = (
            heldout_multi(cfg.seed + HELDOUT_SEED_OFFSET, cfg.eval_samples, cfg.data)
            if cfg.multi_image
            else []
        )
        self.vision: Any = None
        self.state.setdefault("vision_step", 0)
        self.aux_opt: Any = None
        if cfg.vision_steps or cfg.vision_aux or "vision_head" in self.state:
            from lab.tinybase.vision import VisionStage

            self.vision = VisionStage(self.model, self.processor, cfg.vision_head)
            head = self.state.get("vision_head")
            if head is not None and self.vision.fits(head):
                self.vision.head.load_state_dict(head)
            elif head is not None:  # another --vision-head kind, or --grow-text changed the width
                self.log(
                    f"--init {cfg.init}: its {HEAD_FILE} is not a {cfg.vision_head} head for this model's "
                    "tokens; a new head starts"
                )
        if self.state["vision_step"] < cfg.vision_steps:
            self.vision_opt = torch.optim.AdamW(
                self.vision.parameters(), lr=cfg.vision_lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay
            )
            if self.state.get("vision_optimizer") is not None:
                self.vision_opt.load_state_dict(self.state["vision_optimizer"])
        if cfg.vision_aux:  # the head keeps learning in the LLM stage, on the LLM's schedule
            self.aux_opt = torch.optim.AdamW(
                self.vision.head.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay
            )
            if self.state.get("aux_optimizer") is not None:
                self.aux_opt.load_state_dict(self.state["aux_optimizer"])

    # --- progress --------------------------------------------------------------------------------------
    def progress(self) -> float:
        return self.state["step"] / self.cfg.steps

    def done(self) -> bool:
        return self.progress() >= 1.0

    # --- persistence -----------------------------------------------------------------------------------
    def save(self) -> None:
        """Write model/ and state.pt atomically enough: to temporaries first, then renamed into place."""
        import torch

        tmp = self.out / "model.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        self.model.save_pretrained(str(tmp), safe_serialization=True)
        self.processor.save_pretrained(str(tmp))
        self.state["optimizer"] = self.opt.state_dict()
        if self.vision is not None:
            self.state["vision_head"] = self.vision.head.state_dict()
            if self.state["vision_step"] < self.cfg.vision_steps:
                self.state["vision_optimizer"] = self.vision_opt.state_dict()
        if self.aux_opt is not None:
            self.state["aux_optimizer"] = self.aux_opt.state_dict()
        self.state["config"] = {k: v for k, v in asdict(self.cfg).items() if k != "data"}
        self.state["data"] = asdict(self.cfg.data)
        torch.save(self.state, self.out / "state.pt.tmp")
        old = self.out / "model.old"
        if (self.out / "model").exists():
            if old.exists():
                shutil.rmtree(old)
            (self.out / "model").rename(old)
        tmp.rename(self.out / "model")
        os.replace(self.out / "state.pt.tmp", self.out / "state.pt")
        if old.exists():
            shutil.rmtree(old)
        self.state["optimizer"] = None
        self.state.pop("vision_optimizer", None)
        self.state.pop("aux_optimizer", None)

    def save_vision_head(self, folder: Path) -> None:
        """Write the vision head next to a checkpoint (``HEAD_FILE``, safetensors) when this run has one, so that a
        run continuing from it with ``--init`` and ``--vision-aux`` or ``--vision-steps`` keeps training the
        same head instead of a new one. The checkpoint itself stays plain Qwen2.5-VL (loaders ignore the file)."""
        if self.vision is None:
            return
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().cpu() for k, v in self.vision.head.state_dict().items()},
                  str(folder / HEAD_FILE))  # fmt: skip

    def _append_log(self, rec: dict[str, Any]) -> None:
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    # --- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, n: int) -> dict[str, Any]:
        from lab.tinybase.evaluate import evaluate_refer

        t0 = time.perf_counter()
        m = evaluate_refer(self.model, self.processor, self.heldout[:n])
        if self.heldout_multi:
            multi = evaluate_refer(self.model, self.processor, self.heldout_multi[:n])
            m["multi_image"] = {k: multi[k] for k in ("n", "acc@0.5", "image_acc", "mean_iou")}
        m["seconds"] = round(time.perf_counter() - t0, 1)
        m["step"] = self.state["step"]
        return m

    # --- training --------------------------------------------------------------------------------------
    def train_vision(self, stop: Any) -> bool:
        """The vision stage (:mod:`lab.tinybase.vision`); True when it is complete."""
        import torch

        from lab.tinybase.vision import vision_samples

        c, s = self.cfg, self.state
        held = vision_samples(c.seed + HELDOUT_SEED_OFFSET, 0, 128, c.data)
        last_save = time.perf_counter()
        recent: list[float] = []
        fn = partial(_vision_batch, self.processor, c.seed, c.vision_batch_size, c.data)
        batches = prefetched(fn, s["vision_step"], c.vision_steps, self.workers)
        while s["vision_step"] < c.vision_steps:
            if stop():
                return False
            t0 = time.perf_counter()
            step = s["vision_step"]
            warm = min(1.0, (step + 1) / max(1, min(c.warmup, c.vision_steps // 10)))
            for g in self.vision_opt.param_groups:
                g["lr"] = c.vision_lr * warm
            loss = self.vision.loss(next(batches))
            self.vision_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.vision.parameters(), c.grad_clip)
            self.vision_opt.step()
            dt = time.perf_counter() - t0
            s["vision_step"] += 1
            self._steps_this_call += 1
            s["vision_elapsed"] = s.get("vision_elapsed", 0.0) + dt
            recent = [*recent, dt][-50:]
            done = s["vision_step"] == c.vision_steps
            if s["vision_step"] % c.log_every == 0 or s["vision_step"] == 1 or done:
                per = sum(recent) / len(recent)
                rec: dict[str, Any] = {"vision_step": s["vision_step"], "loss": float(loss.item())}
                msg = (f"vision step {s['vision_step']}/{c.vision_steps} loss {rec['loss']:.4f} "
                       f"{per:.2f}s/step ETA {_fmt_s(per * (c.vision_steps - s['vision_step']))}")  # fmt: skip
                if s["vision_step"] % (10 * c.log_every) == 0 or done:
                    rec["heldout_box_error_px"] = self.vision.box_error(held)
                    msg += f" held-out box error {rec['heldout_box_error_px']:.1f} px"
                    s.setdefault("vision_curve", []).append([s["vision_step"], rec["heldout_box_error_px"]])
                self.log(msg)
                self._append_log(rec)
            if time.perf_counter() - last_save > 60 * c.save_minutes:
                self.save()
                last_save = time.perf_counter()
        self.save()  # the head stays: --vision-aux keeps training it, and final/ keeps it (save_vision_head)
        return True

    def train(self, max_seconds: float | None = None, max_steps: int | None = None) -> dict[str, Any]:
        """Train until done (or for ``max_seconds`` / ``max_steps`` optimizer steps of this call, vision stage
        included; the state is saved either way); returns the last held-out metrics."""
        c, s = self.cfg, self.state
        t_call = time.perf_counter()
        self._steps_this_call = 0

        def stop() -> bool:
            return (max_seconds is not None and time.perf_counter() - t_call > max_seconds) or (
                max_steps is not None and self._steps_this_call >= max_steps
            )

        if s["vision_step"] < c.vision_steps and not self.train_vision(stop):
            self.save()
            return {}
        aux, attn = bool(c.vision_aux), bool(c.attn_aux)
        # the data of every step is known ahead (progress = step / steps)
        fn = partial(_llm_batch, self.processor, c.seed, c.batch_size, c.data, c.steps, aux=aux, attn=attn)
        batches = prefetched(fn, s["step"], c.steps, self.workers)
        tokens: dict[str, Any] = {}
        hooks = []
        if aux:  # the merged tokens of this forward, for the head (no second pass through the vision tower)

            def keep(_module: Any, _inputs: Any, output: Any) -> None:  # None: the output stays as it is
                tokens["merged"] = output.pooler_output

            hooks.append(self.model.model.visual.register_forward_hook(keep))
        if attn:  # the last decoder layer's attention probabilities (eager attention returns them)
            heads = self.model.config.text_config.num_attention_heads
            if any(h >= heads for h in c.heads):
                raise MirgError(
                    f"--attn-aux-heads {c.attn_aux_heads}: the last layer has heads 0 to {heads - 1}"
                )
            impl = self.model.config.text_config._attn_implementation
            self.model.set_attn_implementation({"text_config": "eager"})

            def weights(_module: Any, _inputs: Any, output: Any) -> None:
                tokens["attn"] = output[1]

            hooks.append(self.model.model.language_model.layers[-1].self_attn.register_forward_hook(weights))
        try:
            self._llm_loop(stop, batches, aux, tokens)
        finally:
            for hook in hooks:
                hook.remove()
            if attn:
                self.model.set_attn_implementation({"text_config": impl})
        self.save()
        return self._last_eval

    def _llm_loop(self, stop: Any, batches: Any, aux: bool, tokens: dict[str, Any]) -> None:
        """The LLM stage's steps (next-token loss on the completions, plus ``--vision-aux`` x the vision head's
        loss on the merged tokens the hook in ``tokens`` caught); the held-out metrics go to ``_last_eval``."""
        import torch

        from lab.tinybase.batching import to_device
        from lab.tinybase.bind import attn_hit, attn_loss, first_digits

        c, s = self.cfg, self.state
        last_save = time.perf_counter()
        ema = aux_ema = attn_ema = hit_ema = None
        attn_n = 0  # supervised positions in the last step that had any
        recent: list[float] = []
        self._last_eval = {}
        while not self.done():
            if stop():
                break
            t0 = time.perf_counter()
            step, prog = s["step"], self.progress()
            lr = lr_at(c, step, prog)
            for g in self.opt.param_groups:
                g["lr"] = lr
            batch = next(batches)
            vt = batch.pop("vision_targets", None)
            at = batch.pop("attn_targets", None)
            batch = to_device(self.processor, batch, self.model.device)
            loss = self.model(**batch).loss
            total = loss
            if aux:
                vt = {k: v.to(self.model.device) for k, v in vt.items()}
                aux_loss = self.vision.tokens_loss(tokens.pop("merged"), vt)
                total = loss + c.vision_aux * aux_loss
                av = float(aux_loss.item())
                aux_ema = av if aux_ema is None else 0.95 * aux_ema + 0.05 * av
                for g in self.aux_opt.param_groups:
                    g["lr"] = lr
                self.aux_opt.zero_grad(set_to_none=True)
            if at is not None and c.attn_aux_at == "first":
                at = first_digits(at)
            if at is not None and at["rows"].numel():
                at = {k: v.to(self.model.device) for k, v in at.items()}
                w = tokens.pop("attn")
                attn_l = attn_loss(w, at, c.heads)
                total = total + c.attn_aux * attn_l
                av, hv = float(attn_l.item()), attn_hit(w, at, c.heads)
                attn_ema = av if attn_ema is None else 0.95 * attn_ema + 0.05 * av
                hit_ema = hv if hit_ema is None else 0.95 * hit_ema + 0.05 * hv
                attn_n = int(at["rows"].numel())
            tokens.pop("attn", None)
            self.opt.zero_grad(set_to_none=True)
            total.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            self.opt.step()
            if aux:
                torch.nn.utils.clip_grad_norm_(self.vision.head.parameters(), c.grad_clip)
                self.aux_opt.step()
            dt = time.perf_counter() - t0
            s["step"] += 1
            self._steps_this_call += 1
            s["elapsed"] += dt
            lv = float(loss.item())
            ema = lv if ema is None else 0.95 * ema + 0.05 * lv
            recent = [*recent, dt][-50:]
            if s["step"] % c.log_every == 0 or s["step"] == 1:
                per = sum(recent) / len(recent)
                eta = per * (c.steps - s["step"])
                where = f"step {s['step']}/{c.steps}"
                extra = f" vision-aux {aux_ema:.4f}" if aux_ema is not None else ""
                if attn_ema is not None:
                    extra += f" attn-aux {attn_ema:.4f} (target token first {100 * hit_ema:.0f}%)"
                self.log(f"{where} loss {lv:.4f} (ema {ema:.4f}){extra} lr {lr:.2e} gnorm {float(gnorm):.2f} "
                         f"{per:.2f}s/step elapsed {_fmt_s(s['elapsed'])} ETA {_fmt_s(eta)}")  # fmt: skip
                s["curve"].append([s["step"], round(ema, 5)])
                rec = {"step": s["step"], "loss": lv, "ema": ema, "lr": lr, "elapsed": s["elapsed"]}
                if aux_ema is not None:
                    rec["vision_aux_ema"] = aux_ema
                if attn_ema is not None:
                    rec["attn_aux_ema"], rec["attn_hit_ema"], rec["attn_positions"] = (
                        attn_ema,
                        hit_ema,
                        attn_n,
                    )
                self._append_log(rec)
            if c.eval_every and s["step"] % c.eval_every == 0:
                last_eval = self._last_eval = self.evaluate(c.eval_samples)
                s["evals"].append({k: v for k, v in last_eval.items() if k != "examples"})
                self._append_log({"eval": s["evals"][-1]})
                self.log(f"held-out refer ({last_eval['n']}): Acc@0.5 {last_eval['acc@0.5']:.3f} "
                         f"mean IoU {last_eval['mean_iou']:.3f} format {last_eval['format']:.2f} "
                         f"[{last_eval['seconds']}s] e.g. {last_eval['examples'][0]['completion']!r}")  # fmt: skip
                if "multi_image" in last_eval:
                    mm = last_eval["multi_image"]
                    self.log(f"held-out multi-image refer ({mm['n']}): Acc@0.5 {mm['acc@0.5']:.3f} "
                             f"image {mm['image_acc']:.3f}")  # fmt: skip
            if time.perf_counter() - last_save > 60 * c.save_minutes:
                self.save()
                last_save = time.perf_counter()
