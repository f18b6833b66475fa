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
- made of ``IHDR``, consecutive ``IDAT`` chunks and ``IEND``, plus at most a well-formed
  ``pHYs`` (what Pillow and OpenCV write). Every other chunk - ``tRNS`` (transparency),
  ``PLTE``, ``iCCP``/``gAMA``/``sRGB``, ``eXIf`` (orientation), APNG frames, text - sends
  the file to Pillow: either it changes what "the pixels" mean, or libpng validates it
  and prints its own warnings on stderr when it is malformed;
- every chunk's CRC correct, and the zlib stream complete, checksummed and exactly as
  long as the header implies, with valid row filters. So truncated, bit-flipped or forged
  files are declined before libpng sees them: they get Pillow's error, and libpng never
  adds lines of its own to our stderr;
- at most :data:`FAST_MAX_PIXELS` pixels (and within
  :data:`decoder.preprocess.MAX_IMAGE_PIXELS`, the bomb limit, checked from the header):
  on large images Pillow's per-file overhead no longer matters, and the check above
  would inflate the data twice.

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

#: Largest image (width x height) the fast path takes; larger ones go to Pillow.
FAST_MAX_PIXELS = 1 << 20

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIGNATURE_IHDR = _SIGNATURE + b"\x00\x00\x00\x0dIHDR"  # IHDR first, 13 bytes long
_IEND_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_GREY, _RGB = 0, 2
_CHANNELS = {_GREY: 1, _RGB: 3}

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
    """The array shape of an acceptable PNG (see the module doc), or None to decline it.

    Written for few Python steps (it runs once per image on folders of digits): the
    signature + IHDR prefix and the IEND suffix are compared as fixed byte strings, so
    the loop only walks the chunks in between (usually the one IDAT).
    """
    size = len(data)
    if size < 8 + 25 + 12 or not data.startswith(_SIGNATURE_IHDR) or not data.endswith(_IEND_CHUNK):
        return None
    if zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
        return None
    header = _header(data, 16, 13)
    if header is None:
        return None
    view = memoryview(data)
    last = size - 12  # where IEND starts: the chunks in between must tile [33, last) exactly
    position = 33
    pieces: list[memoryview] = []  # the IDAT bodies
    previous = b""
    while position < last:
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 8 + length
        if end + 4 > last or zlib.crc32(view[position + 4 : end]) != int.from_bytes(data[end : end + 4], "big"):
            return None
        if kind == b"IDAT":
            if pieces and previous != b"IDAT":  # IDAT chunks must be consecutive
                return None
            pieces.append(view[position + 8 : end])
        elif kind != b"pHYs" or pieces or length != 9 or data[position + 16] > 1:
            return None
        previous = kind
        position = end + 4
    if position != last or not pieces or not _pixel_data_fits(pieces, *header):
        return None
    height, width, channels = header
    return (height, width) if channels == 1 else (height, width, channels)


def _header(data: bytes, body: int, length: int) -> tuple[int, int, int] | None:
    """(height, width, channels) from an IHDR body at ``body``, when the fast path takes it."""
    if length != 13 or data[body - 4 : body] != b"IHDR":
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", data, body)
    if depth != 8 or colour not in _CHANNELS or compression or filtering or interlace:
        return None
    # MAX_IMAGE_PIXELS is read now, not copied at import: tests and users may patch it.
    if width == 0 or height == 0 or width * height > min(FAST_MAX_PIXELS, preprocess.MAX_IMAGE_PIXELS):
        return None
    return height, width, _CHANNELS[colour]


def _pixel_data_fits(pieces: list[memoryview], height: int, width: int, channels: int) -> bool:
    """The zlib stream is whole (Adler-32 checked), holds exactly one filter byte + one row per
    line, and every filter byte is one of PNG's five: libpng will find nothing to complain about."""
    stride = 1 + width * channels
    inflater = zlib.decompressobj()
    try:
        stream = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        raw = inflater.decompress(stream, height * stride + 1)  # never inflate past the expected size
    except zlib.error:
        return False
    if len(raw) != height * stride or not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        return False
    return max(raw[::stride]) <= 4
