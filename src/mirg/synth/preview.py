"""Contact sheet of MIG-Synth samples: per task a few samples, images side by side with the target box
drawn (green) and any reference box from the question (orange), the question under them."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mirg.errors import ImageError
from mirg.sample import Sample

TARGET_RGB = (0, 230, 0)
REF_RGB = (255, 150, 0)
SHEET_BG = (255, 255, 255)
TEXT_RGB = (20, 20, 20)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _card(
    s: Sample, root: Path, min_width: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont
) -> Image.Image:
    thumbs = []
    for k, rel in enumerate(s.images, start=1):
        path = root / rel
        try:
            im = Image.open(path).convert("RGB")
        except OSError as e:
            raise ImageError(f"cannot read image {path}: {e}") from None
        d = ImageDraw.Draw(im)
        w, h = im.size
        for r in s.ref_boxes:
            if r.image == k:
                d.rectangle(
                    (r.box[0] * w, r.box[1] * h, r.box[2] * w - 1, r.box[3] * h - 1), outline=REF_RGB, width=1
                )
        if s.target_image == k and s.target_box is not None:
            b = s.target_box
            d.rectangle((b[0] * w - 1, b[1] * h - 1, b[2] * w, b[3] * h), outline=TARGET_RGB, width=2)
        thumbs.append(im)
    gap, pad, line = 6, 6, 14
    row_w = sum(t.width for t in thumbs) + gap * (len(thumbs) - 1)
    width = max(min_width, row_w + 2 * pad)
    chars = max(20, int((width - 2 * pad) / max(1.0, font.getlength("x") * 1.05)))
    lines = textwrap.wrap(s.question, chars) or [""]
    img_h = max(t.height for t in thumbs)
    height = pad + line + line + img_h + 4 + line * len(lines) + pad
    card = Image.new("RGB", (width, height), SHEET_BG)
    d = ImageDraw.Draw(card)
    d.text((pad, pad), f"{s.task}  ({s.id})", fill=TEXT_RGB, font=font)
    x = pad
    y = pad + 2 * line
    for k, t in enumerate(thumbs, start=1):
        label = f"Image-{k}" + (" *" if k == s.target_image else "")
        d.text((x, y - line), label, fill=(0, 120, 0) if k == s.target_image else TEXT_RGB, font=font)
        card.paste(t, (x, y))
        x += t.width + gap
    y += img_h + 4
    for ln in lines:
        d.text((pad, y), ln, fill=TEXT_RGB, font=font)
        y += line
    d.rectangle((0, 0, width - 1, height - 1), outline=(200, 200, 200))
    return card


def draw_preview(
    samples: Sequence[Sample],
    root: str | Path,
    out_png: str | Path,
    per_task: int = 2,
    sheet_width: int = 1600,
    colors: int = 256,
) -> Path:
    """Draw a contact sheet of the first ``per_task`` samples of each task (image paths relative to ``root``)
    and save it as a palette PNG (``colors`` entries, small file). Returns the output path."""
    root, out_png = Path(root), Path(out_png)
    font = _font(11)
    picked: dict[str, list[Sample]] = {}
    for s in samples:
        if len(picked.setdefault(s.task, [])) < per_task:
            picked[s.task].append(s)
    cards = [_card(s, root, 420, font) for group in picked.values() for s in group]
    rows: list[list[Image.Image]] = []
    for c in cards:  # greedy packing into rows no wider than sheet_width
        if rows and sum(x.width for x in rows[-1]) + c.width <= sheet_width:
            rows[-1].append(c)
        else:
            rows.append([c])
    width = max(sum(x.width for x in r) for r in rows) if rows else 1
    height = sum(max(x.height for x in r) for r in rows) if rows else 1
    sheet = Image.new("RGB", (width, height), SHEET_BG)
    y = 0
    for r in rows:
        x = 0
        for c in r:
            sheet.paste(c, (x, y))
            x += c.width
        y += max(c.height for c in r)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if colors:
        sheet = sheet.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    sheet.save(out_png, format="PNG", optimize=True)
    return out_png
