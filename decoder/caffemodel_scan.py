"""Weights straight out of a .caffemodel's bytes, as numpy views: no protobuf copy of the floats.

Why: protobuf's parser copies every float into its own arena, and ``np.asarray(blob.data)``
copies them again; with the file's bytes that is three copies of the weights (VGG-16: a
528 MB file took 3.8 GB to convert). A caffemodel is a NetParameter whose layers carry
BlobProtos with the floats as ONE packed field each, so this module walks the protobuf wire
format (https://protobuf.dev/programming-guides/encoding/) just deep enough to find each
layer's name and blobs, and returns the packed floats as ``np.frombuffer`` views of the
file's bytes.

It only accepts what it fully understands: V2 ``layer`` or V1 ``layers`` nets whose blobs
have packed ``data`` (or ``double_data``). For anything else - V0 nets, unpacked floats,
a structure that does not add up (truncated or corrupt files) - :func:`scan_weights` returns
None and the caller parses the file with protobuf, which reads the odd cases and words the
errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from decoder.caffe_proto import caffe_pb2
from decoder.errors import DecoderError
from decoder.wire import LENGTH, VARINT, WireError, fields, signed, varint

_NET = caffe_pb2.NetParameter.DESCRIPTOR.fields_by_name
_V2_LAYER = _NET["layer"].number  # 100
_V1_LAYERS = _NET["layers"].number  # 2
_V2_NAME = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name["name"].number
_V2_BLOBS = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name["blobs"].number
_V1_FIELDS = caffe_pb2.V1LayerParameter.DESCRIPTOR.fields_by_name
_V1_NAME = _V1_FIELDS["name"].number
_V1_BLOBS = _V1_FIELDS["blobs"].number
_V0_LAYER = _V1_FIELDS["layer"].number  # a V0 net nests its layer here: leave it to protobuf
_BLOB = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name
_LEGACY_DIMS = {_BLOB[name].number: index for index, name in enumerate(("num", "channels", "height", "width"))}
_DATA = _BLOB["data"].number
_DOUBLE_DATA = _BLOB["double_data"].number
_SHAPE = _BLOB["shape"].number
_SHAPE_DIM = caffe_pb2.BlobShape.DESCRIPTOR.fields_by_name["dim"].number

_LENGTH, _VARINT = LENGTH, VARINT


class _Unsupported(Exception):
    """The bytes are not something this scanner reads; protobuf will."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    try:
        return varint(data, pos, end)
    except WireError:
        raise _Unsupported from None


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    try:
        yield from fields(data, start, end)
    except WireError:
        raise _Unsupported from None


@dataclass
class ScannedBlob:
    """Where one BlobProto's values are in the file, and its declared shape."""

    data: bytes
    chunks: list[tuple[int, int]] = field(default_factory=list)  # packed float ranges
    double_chunks: list[tuple[int, int]] = field(default_factory=list)
    shape: tuple[int, ...] | None = None
    legacy: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def to_array(self) -> np.ndarray:
        """The values as float32 in the declared shape: ``decoder.caffe_io.blob_to_array``'s rules."""
        chunks, dtype = (self.chunks, "<f4") if self.chunks else (self.double_chunks, "<f8")
        parts = [
            np.frombuffer(self.data, dtype, (end - start) // np.dtype(dtype).itemsize, start) for start, end in chunks
        ]
        values = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, dtype)
        values = values.astype(np.float32, copy=False)  # a view of the file for float data
        if self.shape is not None:
            shape = self.shape
        elif any(self.legacy):
            shape = tuple(self.legacy)
        else:
            shape = (values.size,)
        if any(d < 0 for d in shape):
            raise DecoderError(f"blob declares a negative dimension in shape {list(shape)}")
        if math.prod(shape) != values.size:
            raise DecoderError(f"blob declares shape {list(shape)} but holds {values.size} values")
        return values.reshape(shape)


def _blob(data: bytes, start: int, end: int) -> ScannedBlob:
    blob = ScannedBlob(data)
    for number, wire, begin, after in _fields(data, start, end):
        if number == _DATA:
            if wire != _LENGTH or (after - begin) % 4:
                raise _Unsupported  # unpacked floats
            if after > begin:
                blob.chunks.append((begin, after))
        elif number == _DOUBLE_DATA:
            if wire != _LENGTH or (after - begin) % 8:
                raise _Unsupported
            if after > begin:
                blob.double_chunks.append((begin, after))
        elif number == _SHAPE:
            if wire != _LENGTH:
                raise _Unsupported
            blob.shape = (blob.shape or ()) + _shape_dims(data, begin, after)  # repeated messages merge
        elif number in _LEGACY_DIMS:
            if wire != _VARINT:
                raise _Unsupported
            blob.legacy[_LEGACY_DIMS[number]] = signed(_varint(data, begin, after)[0])
    return blob


def _shape_dims(data: bytes, start: int, end: int) -> tuple[int, ...]:
    dims: list[int] = []
    for number, wire, begin, after in _fields(data, start, end):
        if number != _SHAPE_DIM:
            continue
        if wire == _VARINT:
            dims.append(signed(_varint(data, begin, after)[0]))
        elif wire == _LENGTH:  # packed
            pos = begin
            while pos < after:
                value, pos = _varint(data, pos, after)
                dims.append(signed(value))
        else:
            raise _Unsupported
    return tuple(dims)


def _layer(data: bytes, start: int, end: int, v1: bool) -> tuple[str, list[ScannedBlob]]:
    name_field, blobs_field = (_V1_NAME, _V1_BLOBS) if v1 else (_V2_NAME, _V2_BLOBS)
    name = ""
    blobs: list[ScannedBlob] = []
    for number, wire, begin, after in _fields(data, start, end):
        if v1 and number == _V0_LAYER:
            raise _Unsupported
        if number == name_field:
            if wire != _LENGTH:
                raise _Unsupported
            try:
                name = data[begin:after].decode("utf-8")
            except UnicodeDecodeError:
                raise _Unsupported from None
        elif number == blobs_field:
            if wire != _LENGTH:
                raise _Unsupported
            blobs.append(_blob(data, begin, after))
    return name, blobs


def scan_weights(data: bytes) -> dict[str, list[ScannedBlob]] | None:
    """Each named layer's blobs (the first layer of a name wins, as in Caffe), or None to use protobuf."""
    weights: dict[str, list[ScannedBlob]] = {}
    kinds: set[int] = set()
    try:
        for number, wire, begin, after in _fields(data, 0, len(data)):
            if number not in (_V2_LAYER, _V1_LAYERS):
                continue
            if wire != _LENGTH:
                raise _Unsupported
            kinds.add(number)
            name, blobs = _layer(data, begin, after, v1=number == _V1_LAYERS)
            if blobs and name not in weights:
                weights[name] = blobs
    except _Unsupported:
        return None
    if len(kinds) != 1:  # no layers at all, or V1 and V2 mixed: protobuf's path words the error
        return None
    return weights
