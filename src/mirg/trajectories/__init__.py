"""Reasoning-trajectory construction (MIRG-RL's data recipe, first half): turn annotated multi-image Samples
into a small, verified, reasoning-enhanced SFT set. See docs/trajectories.md.

* :func:`~mirg.trajectories.template.template_reasoning` — offline, from object- and image-level annotations.
* :class:`~mirg.trajectories.teachers.ChatCompletionsTeacher` / :class:`~mirg.trajectories.teachers.LocalTeacher`
  — a stronger VLM writes the reasoning from images + question + hints; every reply is verified
  (:func:`~mirg.trajectories.verify.verify_completion`).
* :func:`~mirg.trajectories.runner.run_template` / :func:`~mirg.trajectories.runner.run_teacher` write into a
  resumable :class:`~mirg.trajectories.store.TrajectoryStore`; record format in :mod:`mirg.trajectories.records`.
* :func:`~mirg.trajectories.mgrounding.load_mgrounding` — MGrounding-630k conversations as Samples.
* :func:`write_template_trajectories` — ``mirg trajectories --mode template`` as a function (data file in,
  trajectory folder out, stats back), with the ``reasoning`` length option.

Importing this package is cheap (no torch).
"""

from mirg.trajectories.build import write_template_trajectories

__all__ = ["write_template_trajectories"]
