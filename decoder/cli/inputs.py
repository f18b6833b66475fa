"""Turning command-line arguments into the images to classify, with their true class when known.

An argument is one of:

- an image file;
- a folder: every image file below it (recursively), in sorted order. When the folder
  holding an image is named after one of the model's labels (DIGITS's dataset layout,
  ``my-images/cat/1.jpg``), that label is the image's true class;
- a glob (``'shots/**/*.png'``), for shells that did not expand it or patterns quoted on
  purpose; matches are sorted;
- a list file (``.txt``, ``.lst``, ``.list``): DIGITS's "Classify Many" format, one
  ``path [class index]`` per line. The trailing integer is the true class index, read with
  DIGITS's own rule (``(.*\\S)\\s+(\\d+)$``, so paths may contain spaces); a trailing
  token that is one of the model's label names is accepted too. Relative paths are
  joined to ``image_folder`` when given (DIGITS's "Image folder" field), else to the list
  file's own folder, so a list keeps working from any current directory.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from decoder.errors import DecoderError

#: File endings treated as images when a folder is scanned (what PIL reads and DIGITS accepted).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp"})
#: File endings read as DIGITS classify-many lists.
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})

_DIGITS_LINE = re.compile(r"(.*\S)\s+(\d+)$")
_NAMED_LINE = re.compile(r"(.*\S)\s+(\S+)$")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class InputImage:
    """One image to classify and, when known, the index of its true class."""

    path: str
    truth: int | None = None


def expand_inputs(
    arguments: Sequence[str],
    labels: Sequence[str] = (),
    image_folder: str | None = None,
    num_classes: int | None = None,
) -> list[InputImage]:
    """Every image named by ``arguments`` (files, folders, globs, list files), in argument order.

    Folders name the true class by label, or, for a model without labels, by class index
    (``0`` .. ``num_classes - 1``, the layout of datasets whose labels live elsewhere).
    """
    index_of = _folder_classes(labels, num_classes)
    images: list[InputImage] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            images.extend(_scan_folder(path, index_of))
        elif path.is_file():
            if path.suffix.lower() in LIST_SUFFIXES:
                images.extend(read_list_file(path, labels, image_folder, num_classes))
            else:
                images.append(InputImage(argument))
        elif path.exists():
            raise DecoderError("is neither a file nor a folder", path)
        elif _GLOB_CHARS.search(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                raise DecoderError("no file matches this pattern", argument)
            images.extend(_with_folder_truth(m, index_of) for m in matches if not os.path.isdir(m))
        else:
            raise DecoderError("no such file or folder", path)
    return images


def _folder_classes(labels: Sequence[str], num_classes: int | None) -> dict[str, int]:
    """Folder name -> class index: the labels, else the indices themselves ("0", "1", ...)."""
    if labels:
        return {label: i for i, label in enumerate(labels)}
    return {str(i): i for i in range(num_classes or 0)}


def expand_images(arguments: list[str]) -> list[Path]:
    """The image files named by ``arguments``, without class information."""
    return [Path(image.path) for image in expand_inputs(arguments)]


def read_list_file(
    path: str | os.PathLike[str],
    labels: Sequence[str] = (),
    image_folder: str | None = None,
    num_classes: int | None = None,
) -> list[InputImage]:
    """A DIGITS classify-many list: ``path [class]`` per line; blank lines are skipped."""
    list_path = Path(path)
    try:
        text = list_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DecoderError("is not a UTF-8 text list of images (list files end in .txt, .lst or .list)", path) from None
    except OSError as exc:
        raise DecoderError(f"cannot read the list file ({exc.strerror or exc})", path) from None
    base = Path(image_folder) if image_folder else list_path.parent
    index_of = {label: i for i, label in enumerate(labels)}
    images = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        name, truth = _parse_line(line, index_of, base)
        known = len(labels) or num_classes
        if truth is not None and known and truth >= known:
            classes = f"{known} classes (0..{known - 1})"
            raise DecoderError(f"line {number}: class index {truth} is out of range; the model has {classes}", path)
        images.append(InputImage(str(_resolve(name, base)), truth))
    if not images:
        raise DecoderError("the list file names no images", path)
    return images


def _parse_line(line: str, index_of: dict[str, int], base: Path) -> tuple[str, int | None]:
    match = _DIGITS_LINE.match(line)
    if match:
        return match.group(1), int(match.group(2))
    match = _NAMED_LINE.match(line)
    if match and match.group(2) in index_of and not _resolve(line, base).exists():
        return match.group(1), index_of[match.group(2)]
    return line, None


def _resolve(name: str, base: Path) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base / path


def _scan_folder(folder: Path, index_of: dict[str, int]) -> list[InputImage]:
    found = []
    for root, _, files in os.walk(folder, onerror=_walk_error):
        truth = index_of.get(os.path.basename(os.path.abspath(root)))  # once per folder, not per file
        found.extend(
            (os.path.join(root, name), truth) for name in files if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        )
    if not found:
        raise DecoderError("folder holds no image files", folder)
    found.sort()
    return [InputImage(path, truth) for path, truth in found]


def _with_folder_truth(path: str, index_of: dict[str, int]) -> InputImage:
    """The image, with its folder's name as true class when that name is one of the labels."""
    return InputImage(path, index_of.get(os.path.basename(os.path.dirname(os.path.abspath(path)))))


def _walk_error(exc: OSError) -> None:
    # A subfolder we cannot list would silently drop its images; say so instead.
    raise DecoderError(f"cannot list the folder ({exc.strerror or exc})", exc.filename)
