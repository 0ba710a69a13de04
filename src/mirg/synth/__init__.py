"""MIG-Synth: procedural multi-image grounding data — the ten MIG-Bench tasks in miniature plus cross-image
relations (MIRG-RL), correct by construction. See docs/synth.md.

Main entry points: :func:`generate_dataset` (writes a folder), :func:`generate_sample` (one sample in memory,
with pixels and exact masks), :func:`render_objects` (the reusable shape renderer), :func:`draw_preview`.
"""

from mirg.synth.generate import (
    GENERATOR,
    Generated,
    chance_levels,
    generate_dataset,
    generate_sample,
    images_range,
    sample_rng,
)
from mirg.synth.preview import draw_preview
from mirg.synth.render import COLORS, SHAPES, Background, ObjectSpec, Rendered, render_objects, shape_mask
from mirg.synth.scene import SIZES, SynthConfig
from mirg.synth.tasks import SYNTH_TASKS, TASK_IMAGES

__all__ = [
    "COLORS",
    "GENERATOR",
    "SHAPES",
    "SIZES",
    "SYNTH_TASKS",
    "TASK_IMAGES",
    "Background",
    "Generated",
    "ObjectSpec",
    "Rendered",
    "SynthConfig",
    "chance_levels",
    "draw_preview",
    "generate_dataset",
    "generate_sample",
    "images_range",
    "render_objects",
    "sample_rng",
    "shape_mask",
]
