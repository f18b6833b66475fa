"""A fast path for the commonest batch input, plain 8-bit PNGs, giving exactly Pillow's pixels.

Why it exists: Pillow spends ~150-200 us in Python-level chunk parsing to open a 28x28
PNG, about ten times what OpenCV's ``imdecode`` needs, and on a folder of small digits
that overhead, not the network, sets the pace. PNG is lossless, so any conforming
decoder returns the same samples for the same file; the only differences between
Pillow and libpng lie in the *interpretation* around the samples (transparency, palette,
16-bit depth, animation, EXIF orientation) and in how each reacts to damaged files.

So this module accepts only files where no interpretation is involved, and declines
(returns None) everything else, which then takes :mod:`decoder.preprocess`'s Pillow
path and gets DIGITS's exact treatment and error messages:

- 8-bit greyscale (colour type 0) or 8-bit RGB (colour type 2), not interlaced - Pillow
  modes L / RGB, which DIGITS's ``load_image`` passes through unchanged;
- no ``tRNS`` (Pillow keeps it as transparency info; libpng could expand it to alpha),
  no ``iCCP`` (libpng prints warnings about some profiles on stderr), no ``eXIf``
  (orientation is a documented "not applied" choice that we do not want to depend on
  OpenCV's flags for), no APNG chunks (which frame is "the image" differs);
- every chunk's CRC correct and the file ending in ``IEND``: truncated or bit-flipped
  files are declined before libpng sees them, so they get Pillow's error (and libpng
  never prints its own complaints on stderr);
- width x height within :data:`decoder.preprocess.MAX_IMAGE_PIXELS` (the same bomb limit,
  checked from the header before decoding).

OpenCV is imported on first use only (it costs ~40-50 ms), so single-image runs that
never take this path do not pay for it.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import numpy as np

from decoder import preprocess

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"
#: Chunks after which Pillow and libpng could disagree about the pixels (see the module doc).
_DECLINED_CHUNKS = frozenset({b"tRNS", b"iCCP", b"eXIf", b"acTL", b"fcTL", b"fdAT"})
_KNOWN_CRITICAL = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})
_GREY, _RGB = 0, 2

_cv2: Any = None


def _opencv() -> Any:
    """OpenCV, imported on first use; False when it is not installed (the fast path then stays off)."""
    global _cv2
    if _cv2 is None:
        try:
            import cv2

            _cv2 = cv2
        except ImportError:
            _cv2 = False
    return _cv2


def available() -> bool:
    """Whether the fast path can run at all (OpenCV importable)."""
    return bool(_opencv())


def read_png(path: str | os.PathLike[str]) -> np.ndarray | None:
    """Pixels of a plain 8-bit PNG file (uint8 HxW grey or HxWx3 RGB), or None to use Pillow.

    Only names ending in ``.png`` are tried (a JPEG is never read twice). Never raises for
    bad files: an unreadable, damaged or unusual file returns None so that the Pillow path
    reports it with DIGITS's semantics and our usual message.
    """
    if not os.fsdecode(path).lower().endswith(".png"):
        return None
    try:
        # os.open/os.read: half the cost of open() + BufferedReader on a 300-byte file.
        descriptor = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(descriptor).st_size
            data = os.read(descriptor, size)
            while len(data) < size and (more := os.read(descriptor, size - len(data))):
                data += more
        finally:
            os.close(descriptor)
    except (OSError, TypeError, ValueError):
        return None
    return decode_png(data)


def decode_png(data: bytes) -> np.ndarray | None:
    """Like :func:`read_png`, from the file's bytes."""
    shape = _plain_png_shape(data)
    if shape is None:
        return None
    cv2 = _opencv()
    if not cv2:
        return None
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint8 or pixels.shape != shape:
        return None
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)  # OpenCV hands out BGR; Pillow's RGB is the contract
    return pixels


def _plain_png_shape(data: bytes) -> tuple[int, ...] | None:
    """The array shape of an acceptable PNG (see the module doc), or None to decline it."""
    size = len(data)
    if size < 8 + 25 + 12 or not data.startswith(_SIGNATURE) or not data.endswith(_IEND_CHUNK):
        return None
    view = memoryview(data)
    position = 8
    shape: tuple[int, ...] | None = None
    seen_data = False
    while position < size:
        if position + 12 > size:
            return None
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 8 + length
        if end + 4 > size or zlib.crc32(view[position + 4 : end]) != struct.unpack_from(">I", data, end)[0]:
            return None
        if shape is None:  # IHDR must come first
            if kind != b"IHDR" or length != 13:
                return None
            width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(
                ">IIBBBBB", data, position + 8
            )
            if depth != 8 or colour not in (_GREY, _RGB) or compression or filtering or interlace:
                return None
            if width == 0 or height == 0 or width * height > preprocess.MAX_IMAGE_PIXELS:  # read now: patchable
                return None
            shape = (height, width) if colour == _GREY else (height, width, 3)
        elif kind == b"IDAT":
            seen_data = True
        elif kind == b"IEND":
            return shape if seen_data and end + 4 == size else None
        elif _declined(kind):
            return None
        position = end + 4
    return None


def _declined(kind: bytes) -> bool:
    """A chunk (other than IDAT/IEND) that sends the file to Pillow: see the module doc."""
    unknown_critical = kind[0] < 0x61 and kind not in _KNOWN_CRITICAL  # upper-case first letter
    return kind in _DECLINED_CHUNKS or kind == b"IHDR" or unknown_critical
