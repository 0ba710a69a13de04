"""Perception pretraining for the CPU demo's tiny base (``mirg pretrain``; see docs/pretraining.md).

Modules: :mod:`~mirg.pretrain.tasks` (on-the-fly single-image referring/listing/counting samples from
MIG-Synth's scene model), :mod:`~mirg.pretrain.batching` (processor-built batches, loss on completions only),
:mod:`~mirg.pretrain.model` (architecture presets), :mod:`~mirg.pretrain.loop` (resumable training loop),
:mod:`~mirg.pretrain.metrics` (held-out Acc@0.5), :mod:`~mirg.pretrain.card` (model card), ``cli``.
"""
