"""The vocabulary of image-level annotations, defined once: MIG-Synth writes these names into every Sample's
``relations`` (each relation is a dict with a ``"type"`` key), and the template writer of
:mod:`mirg.trajectories` reads them back to phrase its cross-image step.

Relation types (fields besides ``type``; object references are ``{"image": 1-based, "object": 0-based}``):

* :data:`DIFFERENCE` — the one change between two images (``change``, ``images``, ``subject``, ``object``);
* :data:`PERTURBATION` — the second image is the first shifted, with noise and colour drift (``shift_px``);
* :data:`SAME_SCENE` — two images show one scene (``images``; ``view`` for another viewpoint);
* :data:`COMMON_OBJECT` — the object every image holds (``subject``, ``occurrences``);
* :data:`SAME_OBJECT` — one object seen again in another image or frame (``subject``, ``object``,
  ``occurrences``);
* :data:`CROP_OF` — an image is a zoomed-in region of the source image (``images``, ``box``);
* :data:`DESCRIBED_BY` — the target fits a text description (``subject``, ``attributes``);
* :data:`SAME_ATTRIBUTE` — the target shares an attribute with a reference (``subject``, ``object``,
  ``attribute``, ``value``);
* :data:`CORRESPONDENCE` — the target is the counterpart of a boxed reference (same ``attribute``);
* :data:`SPATIAL` — one object lies ``relation`` (a key of :data:`SPATIAL_WORDS`) another.
"""

from __future__ import annotations

DIFFERENCE = "difference"
PERTURBATION = "perturbation"
SAME_SCENE = "same_scene"
COMMON_OBJECT = "common_object"
SAME_OBJECT = "same_object"
CROP_OF = "crop_of"
DESCRIBED_BY = "described_by"
SAME_ATTRIBUTE = "same_attribute"
CORRESPONDENCE = "correspondence"
SPATIAL = "spatial"

RELATION_TYPES: tuple[str, ...] = (
    DIFFERENCE,
    PERTURBATION,
    SAME_SCENE,
    COMMON_OBJECT,
    SAME_OBJECT,
    CROP_OF,
    DESCRIBED_BY,
    SAME_ATTRIBUTE,
    CORRESPONDENCE,
    SPATIAL,
)

# the ``relation`` of a SPATIAL relation -> its words ("the circle to the left of the star")
SPATIAL_WORDS: dict[str, str] = {
    "above": "above",
    "below": "below",
    "left": "to the left of",
    "right": "to the right of",
}

# the ``attribute`` of SAME_ATTRIBUTE / CORRESPONDENCE / DESCRIBED_BY -> its word in text
ATTRIBUTE_WORDS: dict[str, str] = {"color": "colour", "shape": "shape", "size": "size"}
