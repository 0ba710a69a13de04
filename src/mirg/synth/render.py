"""Reusable renderer: flat-coloured simple shapes on a plain or lightly textured background, with exact boxes.

Coordinates: pixels of the rendered canvas, origin at the top-left corner, x to the right, y down. A pixel box
``(x1, y1, x2, y2)`` is half-open (``x2``/``y2`` exclusive), so the normalized box is simply
``(x1 / W, y1 / H, x2 / W, y2 / H)``. Every box returned here is the *tight box of the pixels actually drawn*
(after occlusion by objects painted later), never the nominal shape parameters.

Shapes are drawn without anti-aliasing, so each object owns an exact boolean mask. The public entry point for
other stages (e.g. on-the-fly single-image perception data) is :func:`render_objects`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

PixelBox = tuple[int, int, int, int]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross", "hexagon", "ring")

# Saturated object colours (RGB 0-255), chosen to stay distinct from each other and from the neutral backgrounds.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (222, 38, 38),
    "orange": (245, 135, 20),
    "yellow": (240, 214, 30),
    "green": (40, 170, 60),
    "cyan": (30, 200, 215),
    "blue": (40, 75, 225),
    "purple": (145, 55, 200),
    "pink": (245, 115, 190),
}

# Neutral background base colours (low saturation, light or dark) so that every object colour stands out.
BACKGROUNDS: tuple[tuple[int, int, int], ...] = (
    (214, 212, 205),
    (196, 200, 204),
    (224, 218, 200),
    (176, 178, 172),
    (70, 72, 78),
    (52, 56, 60),
    (88, 84, 80),
)


@dataclass(frozen=True)
class ObjectSpec:
    """One object to draw: shape name, colour (name in :data:`COLORS` or RGB), centre and diameter in pixels.

    The shape is inscribed in the square of side ``diameter`` centred on ``(cx, cy)`` (pixel coordinates;
    the square's top-left pixel is ``(round(cx - diameter / 2), round(cy - diameter / 2))``).
    """

    shape: str
    color: str | tuple[int, int, int]
    cx: float
    cy: float
    diameter: int

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLORS[self.color] if isinstance(self.color, str) else self.color

    @property
    def origin(self) -> tuple[int, int]:
        """Top-left pixel of the shape's nominal square."""
        return round(self.cx - self.diameter / 2), round(self.cy - self.diameter / 2)


@dataclass(frozen=True)
class Background:
    """A neutral base colour plus a linear gradient (``amplitude`` in 0-255 units across the image, ``angle``
    in radians) — the "light texture". ``amplitude=0`` gives a plain background."""

    rgb: tuple[int, int, int]
    amplitude: float = 0.0
    angle: float = 0.0


@dataclass
class Mask:
    """An object's visible pixels: boolean ``patch`` whose top-left pixel is at ``(x0, y0)`` on the canvas."""

    patch: np.ndarray
    x0: int
    y0: int

    def full(self, height: int, width: int) -> np.ndarray:
        """The mask as a ``(height, width)`` boolean array (pixels outside the canvas dropped)."""
        out = np.zeros((height, width), dtype=bool)
        ph, pw = self.patch.shape
        ys, xs = max(0, self.y0), max(0, self.x0)
        ye, xe = min(height, self.y0 + ph), min(width, self.x0 + pw)
        if ye > ys and xe > xs:
            out[ys:ye, xs:xe] = self.patch[ys - self.y0 : ye - self.y0, xs - self.x0 : xe - self.x0]
        return out

    @property
    def count(self) -> int:
        return int(self.patch.sum())


@dataclass
class Rendered:
    """Result of :func:`render_objects`: ``image`` (H, W, 3) uint8 RGB; per object (in input order) its visible
    ``masks`` and tight pixel ``boxes`` (None when fully hidden or off-canvas)."""

    image: np.ndarray
    masks: list[Mask]
    boxes: list[PixelBox | None]


def tight_box(mask: np.ndarray, x0: int = 0, y0: int = 0) -> PixelBox | None:
    """Tight half-open box ``(x1, y1, x2, y2)`` of the True pixels of a 2-D mask, offset by ``(x0, y0)``."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1


def normalize_box(
    b: Sequence[int], width: int, height: int, ndigits: int = 6
) -> tuple[float, float, float, float]:
    """Half-open pixel box -> normalized ``[x1, y1, x2, y2]`` in [0, 1] (rounded to ``ndigits``; < 1e-5 px)."""
    x1, y1, x2, y2 = (
        round(v / side, ndigits) for v, side in zip(b, (width, height, width, height), strict=True)
    )
    return x1, y1, x2, y2


def _polygon(
    n: int, r: float, c: float, start: float, inner: float | None = None
) -> list[tuple[float, float]]:
    pts = []
    steps = 2 * n if inner is not None else n
    for i in range(steps):
        rad = r if inner is None or i % 2 == 0 else r * inner
        a = start + 2 * math.pi * i / steps
        pts.append((c + rad * math.cos(a), c + rad * math.sin(a)))
    return pts


@lru_cache(maxsize=4096)
def _shape_patch(shape: str, d: int) -> np.ndarray:
    img = Image.new("L", (d, d), 0)
    draw = ImageDraw.Draw(img)
    e = d - 1  # last pixel index
    c = e / 2
    if shape == "circle":
        draw.ellipse((0, 0, e, e), fill=255)
    elif shape == "square":
        m = round(d * 0.1)
        draw.rectangle((m, m, e - m, e - m), fill=255)
    elif shape == "triangle":
        m = round(d * 0.06)
        draw.polygon([(c, m), (e - m, e - m), (m, e - m)], fill=255)
    elif shape == "star":
        draw.polygon(_polygon(5, c + 0.5, c, -math.pi / 2, inner=0.45), fill=255)
    elif shape == "diamond":
        draw.polygon([(c, 0), (e - d * 0.12, c), (c, e), (d * 0.12, c)], fill=255)
    elif shape == "cross":
        a = d * 0.18
        draw.rectangle((round(c - a), 0, round(c + a), e), fill=255)
        draw.rectangle((0, round(c - a), e, round(c + a)), fill=255)
    elif shape == "hexagon":
        draw.polygon(_polygon(6, c + 0.5, c, 0.0), fill=255)
    elif shape == "ring":
        t = max(2.0, d * 0.22)
        draw.ellipse((0, 0, e, e), fill=255)
        draw.ellipse((t, t, e - t, e - t), fill=0)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    patch = np.asarray(img) > 127
    patch.setflags(write=False)
    return patch


def shape_mask(shape: str, diameter: int) -> np.ndarray:
    """Boolean ``(diameter, diameter)`` mask of a shape (read-only, cached)."""
    if diameter < 3:
        raise ValueError(f"diameter must be at least 3 px, got {diameter}")
    return _shape_patch(shape, int(diameter))


@lru_cache(maxsize=64)
def _ramp(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
    return xs[None, :], ys[:, None]


def render_background(
    bg: Background, width: int, height: int, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """The background as an ``(height, width, 3)`` uint8 array. ``shift`` (pixels) moves the gradient with the
    content (used to render a shifted view of the same scene)."""
    if bg.amplitude == 0:
        return np.full((height, width, 3), bg.rgb, dtype=np.uint8)
    xs, ys = _ramp(width, height)
    gx = (xs - np.float32(shift[0] / width)) * np.float32(math.cos(bg.angle) * bg.amplitude)  # (1, W)
    gy = (ys - np.float32(shift[1] / height)) * np.float32(math.sin(bg.angle) * bg.amplitude)  # (H, 1)
    grad = np.rint(gx + gy).astype(np.int16)[:, :, None]  # (H, W, 1), 0-255 units
    return np.clip(grad + np.array(bg.rgb, dtype=np.int16), 0, 255).astype(np.uint8)


def render_objects(
    objects: Sequence[ObjectSpec],
    width: int,
    height: int | None = None,
    background: Background | tuple[int, int, int] = (214, 212, 205),
    *,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
    bg_shift: tuple[float, float] = (0.0, 0.0),
) -> Rendered:
    """Draw ``objects`` in order (later ones on top) and return the image plus exact per-object masks and boxes.

    ``noise`` is the standard deviation of Gaussian pixel noise in 0-255 units (needs ``rng``); it changes
    colours, not masks or boxes. Objects may extend past the canvas: they are clipped and their boxes are the
    tight box of the visible part.
    """
    height = width if height is None else height
    bg = background if isinstance(background, Background) else Background(tuple(background))  # type: ignore[arg-type]
    canvas = render_background(bg, width, height, bg_shift)
    owner = np.full((height, width), -1, dtype=np.int16)
    windows = []  # per object: the part (xs, ys, xe, ye) of its nominal square on the canvas, maybe empty
    for k, spec in enumerate(objects):
        patch = shape_mask(spec.shape, spec.diameter)
        x0, y0 = spec.origin
        xs, ys = max(0, x0), max(0, y0)
        xe, ye = max(xs, min(width, x0 + spec.diameter)), max(ys, min(height, y0 + spec.diameter))
        windows.append((xs, ys, xe, ye))
        if xe > xs and ye > ys:
            sub = patch[ys - y0 : ye - y0, xs - x0 : xe - x0]
            canvas[ys:ye, xs:xe][sub] = spec.rgb
            owner[ys:ye, xs:xe][sub] = k
    if noise > 0:
        if rng is None:
            raise ValueError("noise > 0 needs an rng (numpy.random.Generator)")
        noisy = canvas.astype(np.float32) + rng.normal(0.0, noise, size=canvas.shape).astype(np.float32)
        canvas = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    masks = [Mask(owner[ys:ye, xs:xe] == k, xs, ys) for k, (xs, ys, xe, ye) in enumerate(windows)]
    return Rendered(canvas, masks, [tight_box(m.patch, m.x0, m.y0) for m in masks])
