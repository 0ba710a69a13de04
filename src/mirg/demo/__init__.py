"""``mirg demo``: the whole MIRG-RL pipeline on the tiny model (MIG-Synth -> template trajectories -> SFT ->
image-aware GRPO -> evaluation of base, SFT and SFT+RL -> a markdown + HTML report), resumable stage by stage,
and the ``--ablation`` table (SFT only, RL only, SFT+RL object-only reward, SFT+RL dual reward). See docs/demo.md.
"""

from mirg.demo.pipeline import DemoSettings, load_settings, run_demo

__all__ = ["DemoSettings", "load_settings", "run_demo"]
