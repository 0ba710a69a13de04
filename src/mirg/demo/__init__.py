"""``mirg demo``: the whole MIRG-RL pipeline on the tiny model (MIG-Synth -> template trajectories -> SFT ->
image-aware GRPO -> evaluation of base, SFT and SFT+RL -> a markdown + HTML report), resumable stage by stage,
and the ``--ablation`` table (SFT only, RL only, SFT+RL object-only reward, SFT+RL dual reward). See docs/demo.md.

Modules: ``settings`` (DemoSettings, the base), ``stages`` (resumable stages), ``ablation``, ``progress`` (stage
lines and ETA), ``pipeline`` (the run, top to bottom), ``report``.
"""

from mirg.demo.pipeline import run_demo
from mirg.demo.settings import DemoSettings, load_settings

__all__ = ["DemoSettings", "load_settings", "run_demo"]
