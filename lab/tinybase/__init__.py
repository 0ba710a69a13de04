"""The tiny base's research: perception pretraining of the 4M-parameter Qwen2.5-VL the CPU demo starts from
(``python -m lab.tinybase``). Outside the ``mirg`` package: it imports ``mirg``, never the other way round.

Modules: :mod:`~lab.tinybase.perception` (the samples), :mod:`~lab.tinybase.config` (the run's options),
:mod:`~lab.tinybase.data` (batches and held-out sets), :mod:`~lab.tinybase.batching` (processor-built batches,
loss on completions only), :mod:`~lab.tinybase.model` (architecture presets), :mod:`~lab.tinybase.loop`
(resumable training loop), :mod:`~lab.tinybase.vision` (vision stage and its head), :mod:`~lab.tinybase.bind`
(attention supervision), :mod:`~lab.tinybase.grow` (growing a checkpoint), :mod:`~lab.tinybase.evaluate`
(held-out Acc@0.5), :mod:`~lab.tinybase.card` (model card), :mod:`~lab.tinybase.cli`.
"""
