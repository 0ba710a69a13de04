"""Scene model for MIG-Synth: objects with attributes, random placement, and per-image drawing with checks.

Pixel coordinates as in :mod:`mirg.synth.render` (origin top-left, half-open boxes). An :class:`Obj` is placed
by the top-left pixel ``(x0, y0)`` of its nominal ``diameter``-sided square. Placement keeps nominal squares
apart by a gap, so drawn objects never touch and every object's visible pixels are exactly its shape.
Any scene that cannot be built cleanly raises :class:`Reject`; the generator then draws a new scene from the
same random stream (deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mirg.errors import MirgError
from mirg.synth.render import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    Background,
    Mask,
    ObjectSpec,
    PixelBox,
    render_objects,
    shape_mask,
)

SIZES: tuple[str, ...] = ("small", "medium", "large")
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

Kind = tuple[str, str]  # (shape, colour)


class Reject(Exception):
    """Raised while building a scene that would be ambiguous or does not fit; the generator resamples."""


@dataclass(frozen=True)
class SynthConfig:
    """Generation knobs.

    ``image_size``: side of every (square) image in pixels. ``images``: (min, max) images per sample, or None
    for each task's default; clamped to the range each task allows. ``distractors``: (min, max) objects per
    image besides the ones a task needs. ``object_size``: diameters of small and large objects as fractions of
    the image side (medium is halfway). ``noise``: std of Gaussian pixel noise (0-255 units) on every image.
    """

    image_size: int = 128
    images: tuple[int, int] | None = None
    distractors: tuple[int, int] = (2, 4)
    object_size: tuple[float, float] = (0.13, 0.27)
    noise: float = 0.0
    max_tries: int = 300

    def validate(self) -> SynthConfig:
        """Return self, or raise MirgError naming the bad knob."""
        if not 64 <= self.image_size <= 1024:
            raise MirgError(f"--image-size must be between 64 and 1024 pixels, got {self.image_size}")
        if self.images is not None:
            lo, hi = self.images
            if not 2 <= lo <= hi <= 6:
                raise MirgError(f"--images must be a range within 2-6 (min <= max), got {lo}-{hi}")
        lo, hi = self.distractors
        if not 0 <= lo <= hi <= 10:
            raise MirgError(f"--distractors must be a range within 0-10 (min <= max), got {lo}-{hi}")
        s_lo, s_hi = self.object_size
        if not (0.06 <= s_lo < s_hi <= 0.4):
            raise MirgError(
                f"--object-size must be two fractions of the image side with 0.06 <= small < large <= 0.4, "
                f"got {s_lo},{s_hi}"
            )
        if round(self.image_size * s_lo) < 7:
            raise MirgError(
                f"objects would be smaller than 7 px ({self.image_size} px x {s_lo}); raise --image-size or the "
                "small end of --object-size"
            )
        if not (0 <= self.noise <= 64 and math.isfinite(self.noise)):
            raise MirgError(f"--noise must be between 0 and 64 (pixel std, 0-255 units), got {self.noise}")
        return self


@dataclass
class Obj:
    """A scene object: attributes plus placement (top-left ``x0, y0`` of its nominal square, in pixels).

    ``instance`` identifies the same physical object across the images of one sample.
    """

    shape: str
    color: str
    size: str
    diameter: int
    instance: int
    x0: int = 0
    y0: int = 0

    @property
    def kind(self) -> Kind:
        return self.shape, self.color

    @property
    def signature(self) -> tuple[str, str, str]:
        return self.shape, self.color, self.size

    @property
    def center(self) -> tuple[float, float]:
        return self.x0 + self.diameter / 2, self.y0 + self.diameter / 2

    def nominal(self) -> PixelBox:
        return self.x0, self.y0, self.x0 + self.diameter, self.y0 + self.diameter

    def moved(self, x0: int, y0: int) -> Obj:
        return Obj(self.shape, self.color, self.size, self.diameter, self.instance, int(x0), int(y0))

    def describe(self, with_size: bool = False) -> str:
        """'red star' or 'small red star'."""
        return f"{self.size} {self.color} {self.shape}" if with_size else f"{self.color} {self.shape}"


@dataclass
class Frame:
    """One rendered image of a sample: the pixels and, per object, its exact visible mask and tight box."""

    image: np.ndarray
    objs: list[Obj]
    masks: list[Mask]
    boxes: list[PixelBox]
    extra: list[dict[str, Any]]  # per-object extra attributes (e.g. truncated)

    def index_of(self, instance: int) -> int:
        return [o.instance for o in self.objs].index(instance)


@dataclass
class Built:
    """What a task builder returns: the frames (Image-1..N), question, 1-based target image, and either the
    target object index (in that frame) or an explicit target pixel box (region)."""

    frames: list[Frame]
    question: str
    target_image: int
    target_object: int | None
    relations: list[dict[str, Any]]
    meta: dict[str, Any]
    target_box_px: PixelBox | None = None
    ref_boxes: list[tuple[int, PixelBox]] = field(default_factory=list)


def boxes_apart(a: PixelBox, b: PixelBox, gap: int) -> bool:
    """True when half-open boxes ``a`` and ``b`` are separated by at least ``gap`` pixels on some axis."""
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


class Ctx:
    """Per-sample builder state: the random stream, the config, and helpers for attributes/placement/drawing."""

    def __init__(self, rng: np.random.Generator, config: SynthConfig, n_images: int):
        self.rng = rng
        self.cfg = config
        self.S = config.image_size
        self.n_images = n_images
        self.gap = max(2, round(self.S * 0.025))
        self._next_instance = 0
        lo, hi = config.object_size
        self._diam = {name: lo + (hi - lo) * k / 2 for k, name in enumerate(SIZES)}

    # --- attributes --------------------------------------------------------------------------------------
    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rng.integers(len(seq)))]

    def n_distractors(self, minimum: int = 0) -> int:
        lo, hi = self.cfg.distractors
        return max(minimum, int(self.rng.integers(lo, hi + 1)))

    def diameter(self, size: str) -> int:
        return max(7, round(self.S * self._diam[size]) + int(self.rng.integers(-1, 2)))

    def new_obj(
        self,
        shape: str | None = None,
        color: str | None = None,
        size: str | None = None,
        avoid_kinds: Iterable[Kind] = (),
        avoid_shapes: Iterable[str] = (),
        avoid_colors: Iterable[str] = (),
    ) -> Obj:
        """A new object (new instance id) with the given or random attributes, not matching the avoid lists."""
        avoid_kinds, avoid_shapes, avoid_colors = set(avoid_kinds), set(avoid_shapes), set(avoid_colors)
        shapes = [s for s in SHAPES if s not in avoid_shapes] if shape is None else [shape]
        colors = [c for c in COLOR_NAMES if c not in avoid_colors] if color is None else [color]
        pairs = [(s, c) for s in shapes for c in colors if (s, c) not in avoid_kinds]
        if not pairs:
            raise Reject("no attribute combination left")
        s, c = pairs[int(self.rng.integers(len(pairs)))]
        size = size if size is not None else self.choice(SIZES)
        self._next_instance += 1
        return Obj(s, c, size, self.diameter(size), self._next_instance)

    def background(self, textured: bool = True) -> Background:
        rgb = self.choice(BACKGROUNDS)
        jitter = self.rng.integers(-8, 9, size=3)
        rgb = tuple(int(np.clip(v + j, 0, 255)) for v, j in zip(rgb, jitter, strict=True))
        amp = float(self.rng.uniform(10, 34)) if textured else 0.0
        return Background(rgb, round(amp, 3), round(float(self.rng.uniform(0, 2 * math.pi)), 4))  # type: ignore[arg-type]

    # --- placement ---------------------------------------------------------------------------------------
    def place(
        self,
        objs: Sequence[Obj],
        fixed: Sequence[Obj] = (),
        bounds: PixelBox | None = None,
        gap: int | None = None,
        fixed_gap: int | None = None,
        ok: Any = None,
        tries: int = 80,
    ) -> list[Obj]:
        """Place ``objs`` at random inside ``bounds`` (pixels; default the whole image), keeping their nominal
        squares ``gap`` px apart from each other and ``fixed_gap`` px from the ``fixed`` objects. ``ok(obj)``
        may veto a position. Returns the placed objects (new Obj values); raises Reject when one does not fit.
        """
        gap = self.gap if gap is None else gap
        fixed_gap = gap if fixed_gap is None else fixed_gap
        bx0, by0, bx1, by1 = bounds if bounds is not None else (0, 0, self.S, self.S)
        taken = [(f.nominal(), fixed_gap) for f in fixed]
        out: list[Obj] = []
        for o in objs:
            d = o.diameter
            if bx1 - bx0 < d or by1 - by0 < d:
                raise Reject("object larger than its bounds")
            xs = self.rng.integers(bx0, bx1 - d + 1, size=tries)
            ys = self.rng.integers(by0, by1 - d + 1, size=tries)
            for x0, y0 in zip(xs.tolist(), ys.tolist(), strict=True):
                nb = (x0, y0, x0 + d, y0 + d)
                if all(boxes_apart(nb, t, g) for t, g in taken) and (ok is None or ok(o.moved(x0, y0))):
                    out.append(o.moved(x0, y0))
                    taken.append((nb, gap))
                    break
            else:
                raise Reject("could not place object")
        return out

    # --- drawing -----------------------------------------------------------------------------------------
    def draw(
        self,
        objs: Sequence[Obj],
        bg: Background,
        *,
        noise: float | None = None,
        noise_seed: int | None = None,
        bg_shift: tuple[float, float] = (0.0, 0.0),
        allow_clip: bool = False,
    ) -> Frame:
        """Render ``objs`` and check that every object is whole (not clipped, not occluded) unless ``allow_clip``.

        ``noise`` defaults to the config's; ``noise_seed`` fixes the noise field (two images drawn with the same
        seed get the same noise, as static-difference pairs need).
        """
        noise = self.cfg.noise if noise is None else noise
        # always draw the noise seed, so the noise level never changes the scene (only its pixels)
        seed = int(self.rng.integers(2**63))
        nrng = np.random.default_rng(seed if noise_seed is None else noise_seed) if noise > 0 else None
        specs = [ObjectSpec(o.shape, o.color, *o.center, o.diameter) for o in objs]
        r = render_objects(specs, self.S, self.S, bg, noise=noise, rng=nrng, bg_shift=bg_shift)
        for o, m, b in zip(objs, r.masks, r.boxes, strict=True):
            if b is None:
                raise Reject("object not visible")
            if not allow_clip and m.count != int(shape_mask(o.shape, o.diameter).sum()):
                raise Reject("object clipped or occluded")
        return Frame(r.image, list(objs), r.masks, r.boxes, [{} for _ in objs])  # type: ignore[arg-type]


def ref(image: int, obj: int) -> dict[str, int]:
    """A reference to one annotated object: 1-based image, 0-based index into that image's object list."""
    return {"image": image, "object": obj}
