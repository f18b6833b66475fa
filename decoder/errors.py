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
        by_type: dict[str, list[str]] = {}
        for name, kind in layers:
            by_type.setdefault(kind, []).append(name)
        parts = []
        for kind, names in by_type.items():
            shown = ", ".join(repr(n) for n in names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            parts.append(f"{kind} (layer {shown})" if len(names) == 1 else f"{kind} (layers {shown})")
        super().__init__(f"unsupported layer type(s), nothing written: {'; '.join(parts)}", path)


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as the user typed it, for messages."""
    return str(Path(path))
