"""Training: stage 1 SFT (TRL ``SFTTrainer``) and stage 2 image-aware GRPO (TRL ``GRPOTrainer``).

Modules, one job each:

* :mod:`mirg.training.config` — the mirg-specific dataclasses (data, freeze-vision, reward) next to TRL's
  ``SFTConfig`` / ``GRPOConfig`` / ``ModelConfig``; YAML via ``--config`` plus command-line overrides; the
  CPU-sensible settings chosen automatically when there is no GPU.
* :mod:`mirg.training.data` — trajectories JSONL -> SFT dataset; Samples -> RL dataset (``prompt``,
  ``images``, ``target_image``, ``target_box``, ``resized_sizes``).
* :mod:`mirg.training.modeling` — loading the policy (base model, full SFT checkpoint or LoRA adapter),
  freeze-vision, the LoRA config, the meta-device build used to validate real-size configs.
* :mod:`mirg.training.progress` — a callback writing every logged step to ``<output_dir>/metrics.jsonl`` (read
  with :func:`mirg.training.metrics.read_metrics`) and progress to the console.
* :mod:`mirg.training.sft`, :mod:`mirg.training.rl` — the two recipes, top to bottom.
* :mod:`mirg.training.sft_cli`, :mod:`mirg.training.rl_cli` — ``mirg sft`` / ``mirg rl``.

Importing this package is cheap; torch, transformers and TRL are imported by the submodules that need them.
"""
