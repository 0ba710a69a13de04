"""``mirg predict --model DIR --images A B ... --question TEXT [--out PNG]``: one multi-image question.

Prints the reasoning, the chosen image and the box in that image's original pixels, and saves a PNG: the
input images side by side, the chosen one framed, the box drawn.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

from mirg.answers import THINK_RE
from mirg.boxes import Box, normalized_to_original_pixels
from mirg.errors import MirgError
from mirg.images import check_images_exist, open_images
from mirg.outputs import check_output_file
from mirg.sample import Sample

PANEL_HEIGHT = 256
HIGHLIGHT = (230, 40, 40)
FRAME = (200, 200, 200)


@dataclass
class PredictResult:
    raw_output: str
    reasoning: str
    image: int | None  # 1-based
    box: Box | None  # normalized
    box_pixels: Box | None  # original pixels of the chosen image
    parse_error: str | None


RGB_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def predict(loaded: Any, images: Sequence[Any], question: str, max_new_tokens: int = 256) -> PredictResult:
    """Answer ``question`` over PIL ``images`` with a loaded model (greedy); box in normalized and pixels."""
    from mirg.evaluation.backends import Request, TransformersBackend
    from mirg.evaluation.runner import parse_generation

    sample = Sample(id="predict", task="predict", images=[f"image-{k}" for k in range(1, len(images) + 1)],
                    question=question)  # fmt: skip
    gen = TransformersBackend(loaded, max_new_tokens=max_new_tokens).generate(
        [Request(sample, list(images))]
    )[0]
    rec = parse_generation(sample, gen, loaded.dialect)
    m = THINK_RE.search(gen.text)
    reasoning = (m.group(1) if m else gen.text.split("<answer>")[0]).strip()
    image, box = rec["pred_image"], rec["pred_box"]
    pixels = None
    if box is not None and image is not None and 1 <= image <= len(images):
        w, h = images[image - 1].size
        pixels = tuple(round(v, 1) for v in normalized_to_original_pixels(box, w, h))
    return PredictResult(gen.text, reasoning, image, tuple(box) if box else None, pixels, rec["parse_error"])  # type: ignore[arg-type]


def render_prediction(
    images: Sequence[Any],
    chosen: int | None,
    box: Box | None,
    caption: str = "",
    panel_height: int = PANEL_HEIGHT,
) -> Any:
    """The images side by side (scaled to one height), ``chosen`` (1-based) framed, ``box`` (normalized) drawn."""
    pad, label_h, caption_h = 12, 20, 24 if caption else 0
    panels = [
        im.convert("RGB").resize(
            (max(1, round(im.width * panel_height / im.height)), panel_height), Image.BICUBIC
        )
        for im in images
    ]
    width = sum(p.width for p in panels) + pad * (len(panels) + 1)
    canvas = Image.new("RGB", (width, panel_height + 2 * pad + label_h + caption_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = pad
    for k, p in enumerate(panels, start=1):
        y = pad + label_h
        canvas.paste(p, (x, y))
        is_chosen = k == chosen
        color = HIGHLIGHT if is_chosen else FRAME
        width_px = 4 if is_chosen else 1
        draw.rectangle((x - width_px, y - width_px, x + p.width + width_px - 1, y + p.height + width_px - 1),
                       outline=color, width=width_px)  # fmt: skip
        draw.text(
            (x, pad),
            f"Image-{k}" + ("  (chosen)" if is_chosen else ""),
            fill=color if is_chosen else (0, 0, 0),
        )
        if is_chosen and box is not None:
            bx = [v * s for v, s in zip(box, (p.width, p.height, p.width, p.height), strict=True)]
            draw.rectangle((x + bx[0], y + bx[1], x + bx[2], y + bx[3]), outline=HIGHLIGHT, width=3)
        x += p.width + pad
    if caption:
        draw.text((pad, panel_height + pad + label_h + 6), caption[:160], fill=(0, 0, 0))
    return canvas


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="local Qwen2.5-VL / Qwen2-VL checkpoint folder")
    p.add_argument("--images", nargs="+", required=True, help="image files, in order Image-1 .. Image-N")
    p.add_argument(
        "--question", required=True, help="the question (e.g. 'Which image shows the red car? Locate it.')"
    )
    p.add_argument("--out", help="PNG to save (images side by side, chosen image framed, box drawn)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--device", help="cuda / cpu (default: cuda when available)")
    p.add_argument("--dtype", help="bfloat16 / float16 / float32 (default: bf16 on GPU, fp32 on CPU)")


def run(args: argparse.Namespace) -> int:
    from mirg.models.loading import load_model

    if args.max_new_tokens < 1:
        raise MirgError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    check_images_exist(args.images)
    if args.out:  # checked before generation, so a bad --out never costs the answer
        Image.init()  # formats that save an RGB picture (Pillow also registers ones that cannot, e.g. .xbm, .h5)
        formats = Image.registered_extensions()
        savable = [ext for ext in RGB_SUFFIXES if formats.get(ext) in Image.SAVE]
        check_output_file(args.out, "--out", {"--images": list(args.images)}, suffixes=savable)
    images = open_images(args.images)
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    res = predict(loaded, images, args.question, max_new_tokens=args.max_new_tokens)
    print(f"reasoning: {res.reasoning or '(none)'}")
    if res.image is not None and 1 <= res.image <= len(images):
        print(f"image: {res.image} ({args.images[res.image - 1]})")
    else:
        print(f"image: {res.image if res.image is not None else 'none'}")
    if res.box_pixels is not None:
        w, h = images[res.image - 1].size  # type: ignore[operator]
        print(f"box: [{', '.join(f'{v:g}' for v in res.box_pixels)}] (pixels of the {w}x{h} original)")
    else:
        print("box: none")
    if res.parse_error:
        print(f"note: {res.parse_error}; raw output: {res.raw_output[:200]!r}")
    if args.out:
        caption = f"Q: {args.question}"
        canvas = render_prediction(
            images, res.image, res.box if res.box_pixels is not None else None, caption
        )
        canvas.save(args.out)
        print(f"saved {args.out}")
    return 0
