"""The labels a user expected, as class indices aligned with their images.

Three sources: a Python sequence (label names or class numbers), a text file with one
``path label`` per line, or the images' folder names (``digits/7/a.png`` expects "7").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from decoder.errors import DecoderError

#: The ``--expect`` value that means "the folder each image is in".
FOLDERS = "folders"


def class_index(value: object, labels: Sequence[str], where: str | None = None) -> int:
    """A label name (from labels.txt) or a class number, as a class index."""
    text = str(value).strip()
    if text in labels:
        return list(labels).index(text)
    try:
        index = int(text)
    except ValueError:
        known = ", ".join(labels[:10]) + (" ..." if len(labels) > 10 else "")
        raise DecoderError(f"expected label {text!r} is neither a class number nor a label ({known})", where) from None
    if index < 0 or (labels and index >= len(labels)):
        raise DecoderError(f"expected class {index} is out of range (the model has {len(labels)} classes)", where)
    return index


def expected_indices(values: Sequence[object], count: int, labels: Sequence[str]) -> np.ndarray:
    """Class indices for a sequence of expected labels, one per image."""
    if len(values) != count:
        raise DecoderError(f"{len(values)} expected labels for {count} inputs")
    return np.array([class_index(value, labels) for value in values], dtype=np.int64)


def load_expected_names(source: str | os.PathLike[str], images: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The expected label of each image file, as written: from a ``path label`` file or folder names."""
    if str(source) == FOLDERS and not Path(source).exists():
        return [Path(p).parent.name for p in images]
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DecoderError(f"no such expected-labels file (or pass `{FOLDERS}` for folder names)", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DecoderError(f"cannot read the expected labels ({exc})", path) from None
    table: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, label = line.strip().rpartition(" ")
        if not name.strip():
            raise DecoderError(f"line {number}: expected `path label`, got {line.strip()!r}", path)
        table[name.strip()] = label
    out = []
    for image in images:
        label = _lookup(table, Path(image))
        if label is None:
            raise DecoderError(f"has no expected label for image {str(image)!r}", path)
        out.append(label)
    return out


def _lookup(table: dict[str, str], image: Path) -> str | None:
    """The label of ``image``, matched by the path as given, then resolved, then by file name."""
    for key in (str(image), image.as_posix(), str(image.resolve()), image.name):
        if key in table:
            return table[key]
    resolved = {str(Path(k).resolve()): v for k, v in table.items()}
    return resolved.get(str(image.resolve()))
