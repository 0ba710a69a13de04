"""What ``mirg sft`` and ``mirg rl`` share around a training run: its result, the notes logged at its start, and
:func:`training_run`, which checks ``output_dir``, picks the checkpoint to resume, locks the folder and keeps its
manifest (``mirg-run.json``, :mod:`mirg.outputs`); :func:`exact_resume`, which makes a trainer's resume load
the checkpoint's weights as ``from_pretrained`` does; and :func:`train_and_save`, the end of both stages."""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirg.errors import MirgError

log = logging.getLogger("mirg.training")

# Config keys that may change when a run resumes (step counts, logging, saving, hardware and distribution); every
# other key of the three configs goes into the manifest and must match. train_file and model_name_or_path are
# recorded by content (fingerprints), not by path.
MAY_CHANGE = (
    "output_dir", "max_steps", "num_train_epochs", "resume_from_checkpoint", "train_file", "model_name_or_path",
    "image_root", "logging_*", "log_*", "num_completions_to_print", "save_*", "report_to", "run_name", "project",
    "trackio_*", "disable_tqdm", "push_to_hub", "hub_*", "skip_memory_metrics", "do_*", "eval_*",
    "per_device_eval_batch_size", "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
    "dataloader_prefetch_factor", "dataloader_multiprocessing_context", "dataset_num_proc", "local_rank", "ddp_*",
    "fsdp*", "deepspeed", "accelerator_config", "parallelism_config", "bf16", "fp16", "tf32", "use_cpu", "dtype",
    "attn_implementation", "gradient_checkpointing*", "activation_checkpointing*", "activation_offloading",
    "torch_compile*", "torch_empty_cache_steps", "enable_jit_checkpoint", "share_prompt", "use_vllm", "vllm_mode",
    "vllm_server_*", "vllm_gpu_memory_utilization", "vllm_tensor_parallel_size", "vllm_enable_sleep_mode",
    "vllm_group_port", "vllm_image_limit", "ds3_gather_for_generation", "use_transformers_*",
)  # fmt: skip


@dataclass
class TrainResult:
    output_dir: str
    log_history: list[dict[str, Any]]
    global_step: int


def resume_checkpoint(resume: Any, output_dir: str) -> Any:
    """``resume`` as ``Trainer.train`` takes it: None, or a checkpoint folder (True = the last one in
    ``output_dir``); MirgError when there is nothing to resume from."""
    if resume in (None, False, ""):
        return None
    if resume is True or resume == "last":
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is None:
            raise MirgError(f"--resume: no checkpoint-* folder in {output_dir}")
        return last
    if not Path(resume).is_dir():
        raise MirgError(f"--resume: checkpoint folder not found: {resume}")
    if not (Path(resume) / "trainer_state.json").is_file():
        raise MirgError(f"--resume {resume}: not a training checkpoint (no trainer_state.json); give a checkpoint-* "
                        "folder or --resume last")  # fmt: skip
    if Path(resume).resolve().parent != Path(output_dir).resolve():
        raise MirgError(f"--resume {resume}: not a checkpoint of output_dir {output_dir}; a run resumes in its own "
                        "folder (set output_dir to the checkpoint's folder)")  # fmt: skip
    return str(resume)


def run_settings(data_args: Any, training_args: Any, model_args: Any) -> dict[str, Any]:
    """What a resumed run must share with the run it continues (its manifest): the train data's and the model's
    fingerprints and every config key but :data:`MAY_CHANGE`, as JSON values."""
    from mirg.outputs import file_fingerprint, model_fingerprint

    keys = {**dataclasses.asdict(data_args), **dataclasses.asdict(model_args), **training_args.to_dict()}
    kept = {k: v for k, v in keys.items() if not any(fnmatch.fnmatchcase(k, p) for p in MAY_CHANGE)}
    model = str(model_args.model_name_or_path)
    kept["train_data"] = file_fingerprint(data_args.train_file)
    kept["model"] = model_fingerprint(model) if Path(model).is_dir() else model
    return json.loads(json.dumps(kept, sort_keys=True, default=str), parse_constant=str)  # inf/nan as text


@contextlib.contextmanager
def training_run(
    stage: str, data_args: Any, training_args: Any, model_args: Any, resume: Any
) -> Iterator[Any]:
    """Check ``output_dir``, lock it for the run and compare (or write) its manifest; yields the checkpoint to
    resume from (None: a fresh run). A fresh run into a folder holding checkpoints, and a resumed run with other
    settings than the run it continues, are refused with one line."""
    from mirg.outputs import check_out_dir, open_run

    out = training_args.output_dir
    inputs = {"train_file": data_args.train_file, "model_name_or_path": model_args.model_name_or_path}
    folder = check_out_dir(out, "output_dir", inputs=inputs)
    checkpoint = resume_checkpoint(resume, out)
    if not Path(data_args.train_file).is_file():
        raise MirgError(f"train_file not found: {data_args.train_file}")
    earlier = sorted(p.name for p in folder.glob("checkpoint-*") if p.is_dir())
    if earlier and not checkpoint:
        raise MirgError(f"output_dir {out} holds {', '.join(earlier)} of an earlier run: continue it with --resume, "
                        "or use a new output_dir")  # fmt: skip
    if training_args.process_index != 0:  # the main process holds the lock and keeps the manifest
        yield checkpoint
        return
    settings = run_settings(data_args, training_args, model_args)
    way_out = f"resume with the settings in {folder / 'mirg-run.json'}, or use a new output_dir"
    with open_run(folder, stage, settings, outputs=earlier, flag="output_dir", way_out=way_out):
        yield checkpoint


def load_checkpoint_weights(model: Any, checkpoint: str) -> None:
    """Copy a checkpoint's weights into ``model`` as ``from_pretrained`` reads them (key conversions included);
    MirgError when a weight is missing, unexpected or of another shape."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report of missing keys: the error below says it in one line
    try:
        fresh, info = type(model).from_pretrained(checkpoint, dtype=model.dtype, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(level)
    bad = {k.replace("_", " "): sorted(v) for k, v in info.items() if k.endswith("_keys") and v}
    if bad:
        found = "; ".join(f"{k} {', '.join(v[:3])}{', ...' if len(v) > 3 else ''}" for k, v in bad.items())
        raise MirgError(f"--resume {checkpoint}: its weights do not fit the model ({found}); resuming would "
                        "continue from partly untrained weights")  # fmt: skip
    model.load_state_dict(fresh.state_dict(), strict=True)
    log.info("resume: %d weights loaded from %s", len(fresh.state_dict()), checkpoint)


class _ExactResume:
    """Trainer mixin: transformers 5 saves Qwen2-VL / Qwen2.5-VL checkpoints in the Hub's key layout
    (``model.layers.*``, ``visual.*``) while ``Trainer`` resumes with a plain ``load_state_dict`` that expects the
    model's own (``model.language_model.*``, ``model.visual.*``): every weight stayed untrained, with the trained
    step, optimizer and scheduler. A full model is loaded here as ``from_pretrained`` does; adapters (PEFT),
    FSDP and DeepSpeed keep the Trainer's own loading."""

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from transformers import PreTrainedModel

        target = self.model if model is None else model  # type: ignore[attr-defined]
        folder = Path(resume_from_checkpoint)
        full = (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()
        if isinstance(target, PreTrainedModel) and full and (folder / "config.json").is_file():
            load_checkpoint_weights(target, resume_from_checkpoint)
        else:
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]


def exact_resume(trainer_class: type) -> type:
    """``trainer_class`` with a resume that restores the checkpoint's weights exactly (see :class:`_ExactResume`)."""
    return type(trainer_class.__name__, (_ExactResume, trainer_class), {})


def log_notes(notes: list[str]) -> None:
    for note in notes:
        log.info(note)


def train_and_save(trainer: Any, processor: Any, stage: str, checkpoint: str | None) -> TrainResult:
    """What both stages do with their built trainer: every logged step to ``metrics.jsonl``, progress on the
    console, train (or resume from ``checkpoint``), then save the model and the processor to ``output_dir``."""
    from mirg.training.progress import attach_training_log

    out = trainer.args.output_dir
    attach_training_log(trainer, stage, resume=bool(checkpoint))
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(out)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(out)
    log.info("%s done: model saved to %s", stage.upper(), out)
    return TrainResult(out, list(trainer.state.log_history), trainer.state.global_step)
