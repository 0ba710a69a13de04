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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mirg.errors import MirgError
from mirg.pretrain.tasks import DataConfig, batch_samples, heldout_refer

HELDOUT_SEED_OFFSET = 1_000_003


@dataclass
class PretrainConfig:
    out: str
    size: str = "base"
    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 500
    eval_samples: int = 64
    final_eval_samples: int = 500
    save_minutes: float = 3.0
    log_every: int = 25
    threads: int = 0
    device: str | None = None
    data: DataConfig = field(default_factory=DataConfig)

    def validate(self) -> PretrainConfig:
        if (self.steps is None) == (self.minutes is None):
            raise MirgError("give exactly one of --steps N or --minutes M")
        if self.steps is not None and self.steps < 1:
            raise MirgError("--steps must be at least 1")
        if self.minutes is not None and not self.minutes > 0:
            raise MirgError("--minutes must be positive")
        if self.batch_size < 1:
            raise MirgError("--batch-size must be at least 1")
        return self


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


class Trainer:
    """One pretraining run (fresh or resumed) in ``cfg.out``."""

    def __init__(self, cfg: PretrainConfig, resume: bool = False, log: Any = None):
        import torch

        from mirg.models.loading import load_model
        from mirg.pretrain.model import build_model_dir

        self.cfg = cfg.validate()
        self.out = Path(cfg.out)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        state_path = self.out / "state.pt"
        if resume and state_path.is_file():
            self.state = torch.load(state_path, map_location="cpu", weights_only=False)
            saved = self.state["config"]
            for k in ("size", "batch_size", "lr", "seed", "warmup"):
                if saved.get(k) != getattr(cfg, k):
                    self.log(f"resume: keeping the run's {k}={saved.get(k)!r} (given {getattr(cfg, k)!r})")
                    setattr(cfg, k, saved.get(k))
            if (saved.get("steps"), saved.get("minutes")) != (cfg.steps, cfg.minutes):
                # the length may change on resume (shorten or extend a split run); the schedule follows from here
                self.log(
                    f"resume: run length changed from steps={saved.get('steps')} minutes={saved.get('minutes')} "
                    f"to steps={cfg.steps} minutes={cfg.minutes}; the schedule follows the new length"
                )
                self.state.setdefault("length_changes", []).append(
                    {"at_step": self.state["step"], "steps": cfg.steps, "minutes": cfg.minutes}
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
            model_dir = build_model_dir(self.out / "model", cfg.size, cfg.seed)
            self.state = {"step": 0, "elapsed": 0.0, "curve": [], "evals": [], "optimizer": None,
                          "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
        loaded = load_model(model_dir, device=cfg.device, dtype="float32")
        self.model, self.processor = loaded.model, loaded.processor
        self.model.train()
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.95),
        )  # fmt: skip
        if self.state["optimizer"] is not None:
            self.opt.load_state_dict(self.state["optimizer"])
        self.heldout = heldout_refer(cfg.seed + HELDOUT_SEED_OFFSET, cfg.final_eval_samples, cfg.data)

    # --- progress --------------------------------------------------------------------------------------
    def progress(self) -> float:
        c, s = self.cfg, self.state
        if c.steps is not None:
            return s["step"] / c.steps
        return s["elapsed"] / (60 * c.minutes)

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

    def _append_log(self, rec: dict[str, Any]) -> None:
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    # --- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, n: int) -> dict[str, Any]:
        from mirg.pretrain.metrics import evaluate_refer

        t0 = time.perf_counter()
        m = evaluate_refer(self.model, self.processor, self.heldout[:n])
        m["seconds"] = round(time.perf_counter() - t0, 1)
        m["step"] = self.state["step"]
        return m

    # --- training --------------------------------------------------------------------------------------
    def train(self, max_seconds: float | None = None) -> dict[str, Any]:
        """Train until done (or for ``max_seconds`` of this call); returns the last held-out metrics."""
        import torch

        from mirg.pretrain.batching import collate

        c, s = self.cfg, self.state
        t_call = time.perf_counter()
        last_save = time.perf_counter()
        ema = None
        recent: list[float] = []
        last_eval: dict[str, Any] = {}
        while not self.done():
            if max_seconds is not None and time.perf_counter() - t_call > max_seconds:
                break
            t0 = time.perf_counter()
            step, prog = s["step"], self.progress()
            lr = lr_at(c, step, prog)
            for g in self.opt.param_groups:
                g["lr"] = lr
            batch = collate(self.processor, batch_samples(c.seed, step, c.batch_size, c.data, prog))
            batch = {k: v.to(self.model.device) if hasattr(v, "to") else v for k, v in batch.items()}
            loss = self.model(**batch).loss
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            self.opt.step()
            dt = time.perf_counter() - t0
            s["step"] += 1
            s["elapsed"] += dt
            lv = float(loss.item())
            ema = lv if ema is None else 0.95 * ema + 0.05 * lv
            recent = [*recent, dt][-50:]
            if s["step"] % c.log_every == 0 or s["step"] == 1:
                per = sum(recent) / len(recent)
                if c.steps is not None:
                    eta = per * (c.steps - s["step"])
                    where = f"step {s['step']}/{c.steps}"
                else:
                    eta = 60 * c.minutes - s["elapsed"]
                    where = f"step {s['step']} ({100 * self.progress():.0f}%)"
                self.log(f"{where} loss {lv:.4f} (ema {ema:.4f}) lr {lr:.2e} gnorm {float(gnorm):.2f} "
                         f"{per:.2f}s/step elapsed {_fmt_s(s['elapsed'])} ETA {_fmt_s(eta)}")  # fmt: skip
                s["curve"].append([s["step"], round(ema, 5)])
                self._append_log(
                    {"step": s["step"], "loss": lv, "ema": ema, "lr": lr, "elapsed": s["elapsed"]}
                )
            if c.eval_every and s["step"] % c.eval_every == 0:
                last_eval = self.evaluate(c.eval_samples)
                s["evals"].append({k: v for k, v in last_eval.items() if k != "examples"})
                self._append_log({"eval": s["evals"][-1]})
                self.log(f"held-out refer ({last_eval['n']}): Acc@0.5 {last_eval['acc@0.5']:.3f} "
                         f"mean IoU {last_eval['mean_iou']:.3f} format {last_eval['format']:.2f} "
                         f"[{last_eval['seconds']}s] e.g. {last_eval['examples'][0]['completion']!r}")  # fmt: skip
            if time.perf_counter() - last_save > 60 * c.save_minutes:
                self.save()
                last_save = time.perf_counter()
        self.save()
        return last_eval
