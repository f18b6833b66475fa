"""Turning command-line arguments into a list of image files."""

from __future__ import annotations

from pathlib import Path

from decoder.errors import DecoderError

#: File endings treated as images when a folder is scanned (what PIL reads and DIGITS accepted).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp"})


def expand_images(arguments: list[str]) -> list[Path]:
    """Files as given; a folder means every image file below it, in sorted order."""
    images: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise DecoderError("folder holds no image files", path)
            images.extend(found)
        elif path.exists():
            images.append(path)
        else:
            raise DecoderError("no such file or folder", path)
    return images
