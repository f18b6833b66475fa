"""The protobuf wire format, read by hand where a full parse would copy too much.

Readers: :mod:`decoder.caffemodel_scan` (a caffemodel's floats as numpy views of the file)
and :func:`onnx_metadata` (a .onnx's ``metadata_props`` without parsing, or even reading,
its graph: the runtime picks its session options from them before ONNX Runtime opens the
file, and without importing ``onnx``). Writers (:mod:`decoder.onnx_writer`,
``scripts/caffe_writer.py``) use :func:`length_prefix` to stream big fields from numpy.
Encoding: https://protobuf.dev/programming-guides/encoding/
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

#: ModelProto.metadata_props and StringStringEntryProto's key / value (onnx.proto).
_METADATA_PROPS, _KEY, _VALUE = 14, 1, 2


class WireError(Exception):
    """The bytes are not protobuf this reader takes (truncated, corrupt, or groups)."""


def varint(data: bytes | mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def encode_varint(value: int) -> bytes:
    """``value`` (non-negative) as a varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def length_prefix(field_number: int, length: int) -> bytes:
    """The key and length of a length-delimited field: its value's bytes follow (written separately)."""
    return encode_varint(field_number << 3 | LENGTH) + encode_varint(length)


def signed(value: int) -> int:
    """int32/int64 fields hold negatives as 64-bit two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


def fields(data: bytes | mmap.mmap, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field in ``data[start:end]``."""
    pos = start
    while pos < end:
        key, pos = varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == VARINT:
            _, after = varint(data, pos, end)
        elif wire == LENGTH:
            length, pos = varint(data, pos, end)
            after = pos + length
        elif wire == FIXED64:
            after = pos + 8
        elif wire == FIXED32:
            after = pos + 4
        else:  # groups: in neither Caffe's nor ONNX's schema
            raise WireError(f"wire type {wire}")
        if after > end:
            raise WireError("field runs past the end")
        yield number, wire, pos, after
        pos = after


def onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """A .onnx's ``metadata_props`` read from the file's top level; None when it cannot be read so.

    The file is memory-mapped and only the top-level field headers are touched: the graph
    (hundreds of MB for VGG-16) is skipped by its length.
    """
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            props: dict[str, str] = {}
            for number, wire, start, end in fields(data, 0, len(data)):
                if number != _METADATA_PROPS or wire != LENGTH:
                    continue
                key = value = ""
                for inner, inner_wire, begin, after in fields(data, start, end):
                    if inner in (_KEY, _VALUE) and inner_wire == LENGTH:
                        text = data[begin:after].decode("utf-8")
                        key, value = (text, value) if inner == _KEY else (key, text)
                props[key] = value
            return props
    except (OSError, ValueError, WireError):  # ValueError: empty file (mmap), bad UTF-8
        return None
