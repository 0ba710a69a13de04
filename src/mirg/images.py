"""Opening the images of a Sample, with errors that name the file.

Sample image paths are relative to a root (the Sample JSONL's folder, or MIG-Bench's ``--image-root``);
absolute paths are used as they are. An image larger than :data:`MAX_IMAGE_PIXELS` (by its header: a
decompression bomb, or a photo far beyond any VLM's input) is an ImageError naming the file and the limit, in
every verb, before anything is decoded.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mirg.errors import ImageError

MAX_IMAGE_PIXELS = 8192 * 8192  # 67 Mpx: Qwen2.5-VL reads at most 12.8 Mpx; PIL's own bomb limit is 89 Mpx


def _open(p: Path) -> Any:
    """``PIL.Image.open`` with the pixel limit checked on the header; ImageError naming the path."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is lower
            im = Image.open(p)
    except FileNotFoundError:
        raise ImageError(f"image not found: {p}") from None
    except Image.DecompressionBombError:
        raise ImageError(f"image {p} is larger than mirg's limit of {MAX_IMAGE_PIXELS} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"cannot read image {p}: {e}") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise ImageError(
            f"image {p} is {w}x{h} = {w * h} pixels, above mirg's limit of {MAX_IMAGE_PIXELS} "
            "(a decompression bomb, or downscale it)"
        )
    return im


def resolve(path: str | Path, root: str | Path | None = None) -> Path:
    """``path`` under ``root`` unless it is absolute (or no root is given)."""
    p = Path(path)
    return p if p.is_absolute() or root is None else Path(root) / p


def open_image(path: str | Path, root: str | Path | None = None) -> Any:
    """Open one image as an RGB ``PIL.Image`` (fully loaded); ImageError naming the path when missing, corrupt,
    truncated or too large."""
    p = resolve(path, root)
    with _open(p) as im:
        try:
            im.load()
            return im.convert("RGB")
        except (OSError, ValueError, SyntaxError) as e:
            raise ImageError(f"cannot read image {p}: {e}") from None


def image_size(path: str | Path, root: str | Path | None = None) -> tuple[int, int]:
    """(width, height) of an image file, reading only its header; ImageError naming the path."""
    with _open(resolve(path, root)) as im:
        return im.size


def verified_size(path: str | Path, root: str | Path | None = None) -> tuple[int, int]:
    """(width, height) after decoding the whole image once (a truncated or corrupt file is an ImageError)."""
    return open_image(path, root).size


def open_images(paths: Sequence[str | Path], root: str | Path | None = None) -> list[Any]:
    return [open_image(p, root) for p in paths]


def check_images_exist(paths: Iterable[str | Path], root: str | Path | None = None, show: int = 5) -> None:
    """Raise one ImageError listing how many images are missing and the first few, or return quietly."""
    paths = list(paths)
    missing = [p for p in dict.fromkeys(resolve(path, root) for path in paths) if not p.is_file()]
    if missing:
        first = ", ".join(f"{p} (a folder)" if p.is_dir() else str(p) for p in missing[:show])
        more = f" (and {len(missing) - show} more)" if len(missing) > show else ""
        where = f" under {root}" if root is not None else ""
        raise ImageError(
            f"{len(missing)} of {len(set(map(str, paths)))} images are missing{where}: {first}{more}"
        )
