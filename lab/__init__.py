"""Research kept beside the product, outside the wheel: the tiny base's pretraining (:mod:`lab.tinybase`) and the
probes behind its history (``lab/probes``, notes in ``lab/NOTES.md``). Run from the repository root."""
