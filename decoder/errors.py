"""The one exception type users see.

Every bad input (a missing or corrupt file, an unknown layer, mismatched weights, an
unreadable image, a hostile archive) is reported as a :class:`DecoderError`: the CLI
prints it as one line and exits with status 2, without a traceback. Anything else
that escapes is a bug of ours and exits with status 1.
"""

from __future__ import annotations

import os
from pathlib import Path


class DecoderError(Exception):
    """A problem with the user's input, described in one line that names the file."""

    exit_code = 2

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        self.message = " ".join(str(message).split())
        self.path = None if path is None else str(path)
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class UnsupportedLayersError(DecoderError):
    """The net uses layer types we cannot convert; lists every one at once."""

    def __init__(self, layers: list[tuple[str, str]], path: str | os.PathLike[str] | None = None) -> None:
        self.layers = layers
        listed = ", ".join(f"{name!r} ({kind})" for name, kind in layers)
        super().__init__(f"unsupported layer types, nothing written: {listed}", path)


def make_sure(condition: object, message: str, path: str | os.PathLike[str] | None = None) -> None:
    """Raise :class:`DecoderError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise DecoderError(message, path)


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as the user typed it, for messages."""
    return str(Path(path))
