"""Opening the images of a Sample, with errors that name the file.

Sample image paths are relative to a root (the Sample JSONL's folder, or MIG-Bench's ``--image-root``);
absolute paths are used as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mirg.errors import ImageError


def resolve(path: str | Path, root: str | Path | None = None) -> Path:
    """``path`` under ``root`` unless it is absolute (or no root is given)."""
    p = Path(path)
    return p if p.is_absolute() or root is None else Path(root) / p


def open_image(path: str | Path, root: str | Path | None = None) -> Any:
    """Open one image as an RGB ``PIL.Image`` (fully loaded); ImageError naming the path when missing/corrupt."""
    from PIL import Image, UnidentifiedImageError

    p = resolve(path, root)
    try:
        with Image.open(p) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"image not found: {p}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"cannot read image {p}: {e}") from None


def image_size(path: str | Path, root: str | Path | None = None) -> tuple[int, int]:
    """(width, height) of an image file, reading only its header; ImageError naming the path."""
    from PIL import Image, UnidentifiedImageError

    p = resolve(path, root)
    try:
        with Image.open(p) as im:
            return im.size
    except FileNotFoundError:
        raise ImageError(f"image not found: {p}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"cannot read image {p}: {e}") from None


def open_images(paths: Sequence[str | Path], root: str | Path | None = None) -> list[Any]:
    return [open_image(p, root) for p in paths]


def missing_images(paths: Iterable[str | Path], root: str | Path | None = None) -> list[Path]:
    """Every path (deduplicated, in first-seen order) that does not exist as a file under ``root``."""
    seen: set[Path] = set()
    missing = []
    for path in paths:
        p = resolve(path, root)
        if p in seen:
            continue
        seen.add(p)
        if not p.is_file():
            missing.append(p)
    return missing


def check_images_exist(paths: Iterable[str | Path], root: str | Path | None = None, show: int = 5) -> None:
    """Raise one ImageError listing how many images are missing and the first few, or return quietly."""
    paths = list(paths)
    missing = missing_images(paths, root)
    if missing:
        first = ", ".join(str(p) for p in missing[:show])
        more = f" (and {len(missing) - show} more)" if len(missing) > show else ""
        where = f" under {root}" if root is not None else ""
        raise ImageError(
            f"{len(missing)} of {len(set(map(str, paths)))} images are missing{where}: {first}{more}"
        )
