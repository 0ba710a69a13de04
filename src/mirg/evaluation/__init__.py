"""Batched, resumable evaluation: generation backends, the predictions writer, and the ``mirg eval`` runner."""
