"""Writing a .onnx atomically, weights streamed from numpy, and as external data past 2 GB.

Why not ``model.SerializeToString()``: it builds the whole file in memory, a copy of every
weight on top of the model's own (and of the caffemodel's, still alive while converting),
and protobuf refuses a message over 2 GB at all. Here the model is written in pieces: the
model without its graph, then the graph field by hand - its small part serialized by
protobuf, each initializer's header from protobuf and its data straight from the numpy
array (``ConvertedGraph.weights``). The bytes parse to the same ModelProto (protobuf allows
a message's fields in any order).

Past :func:`external_data_limit` (ONNX's 2 GB protobuf limit; ``DECODER_EXTERNAL_DATA_BYTES``
lowers it, for tests) the weights go to ``<name>.onnx.data`` beside the model, as ONNX
external data (https://onnx.ai/onnx/repo-docs/ExternalData.html): each tensor names the file,
its offset (aligned to 4 KiB, so ONNX Runtime can map it) and its length.

Both files are written under temporary names in the destination folder and renamed at the
end, so an error never leaves a half-written model behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import onnx

from decoder.errors import DecoderError
from decoder.wire import length_prefix

ENV_LIMIT = "DECODER_EXTERNAL_DATA_BYTES"
#: Offsets of tensors in the external data file are multiples of this (a page).
ALIGNMENT = 4096

_GRAPH_FIELD = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number
_INITIALIZER_FIELD = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
_RAW_DATA_FIELD = onnx.TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number


def external_data_limit() -> int:
    """Model size (bytes) from which weights are written as external data: 2 GB, or the env override."""
    value = os.environ.get(ENV_LIMIT)
    if value:
        try:
            return max(0, int(value))
        except ValueError:
            raise DecoderError(f"{ENV_LIMIT} must be a number of bytes, not {value!r}") from None
    return int(onnx.checker.MAXIMUM_PROTOBUF) - 1


def _little_endian(array: np.ndarray) -> np.ndarray:
    """C-ordered little-endian data (a view when it already is, as caffemodel weights are)."""
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)


def write_onnx(
    model: onnx.ModelProto,
    output: Path,
    weights: Mapping[str, np.ndarray] | None = None,
    external_above: int | None = None,
) -> Path | None:
    """Write ``model`` (whose initializers named in ``weights`` hold no data) to ``output``.

    Returns the external data file when one was written (the model with its weights would
    pass ``external_above`` bytes, by default :func:`external_data_limit`), else None.
    """
    weights = dict(weights or {})
    output = Path(output)
    if output.is_dir():
        raise DecoderError("is a directory; give a file name for the .onnx", output)
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise DecoderError("the output folder does not exist", parent)
    limit = external_data_limit() if external_above is None else external_above
    size = model.ByteSize() + sum(int(a.nbytes) for a in weights.values())
    data_path = output.with_name(output.name + ".data") if size > limit and weights else None
    if data_path is None and size > int(onnx.checker.MAXIMUM_PROTOBUF) - 1:
        raise DecoderError(
            f"the converted model ({size / 2**30:.1f} GB) cannot be written as one .onnx file (over 2 GB)", output
        )
    temporaries: list[str] = []
    placed: list[Path] = []
    try:
        model_tmp = _temporary(output, parent, temporaries)
        data_tmp = _temporary(data_path, parent, temporaries) if data_path is not None else None
        with open(model_tmp, "wb") as handle:
            if data_tmp is not None and data_path is not None:
                with open(data_tmp, "wb") as data_handle:
                    _write_model(handle, model, weights, data_handle, data_path.name)
                    _finish(data_handle)
            else:
                _write_model(handle, model, weights, None, "")
            _finish(handle)
        if data_tmp is not None and data_path is not None:
            os.replace(data_tmp, data_path)
            placed.append(data_path)
        os.replace(model_tmp, output)
    except BaseException as exc:
        for name in [*temporaries, *placed]:  # a weights file whose model could not be placed goes too
            Path(name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DecoderError(f"cannot write the .onnx ({exc.strerror or exc}); nothing was written", output) from None
        raise
    return data_path


def _temporary(path: Path, parent: Path, temporaries: list[str]) -> str:
    """A private temporary file beside ``path``, with the mode a new file would get."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise DecoderError(f"cannot write in the output folder ({exc.strerror or exc})", parent) from None
    temporaries.append(name)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, _new_file_mode(path))
    os.close(fd)
    return name


def _finish(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _new_file_mode(output: Path) -> int:
    """The mode of the file being replaced, else 0666 minus the umask (what ``open`` would give)."""
    try:
        return output.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _write_model(
    handle: BinaryIO,
    model: onnx.ModelProto,
    weights: Mapping[str, np.ndarray],
    data_handle: BinaryIO | None,
    data_name: str,
) -> None:
    """The ModelProto's bytes: everything but the graph, then the graph with streamed initializers."""
    head = onnx.ModelProto()
    head.CopyFrom(model)  # cheap: the big initializers hold no data
    initializers = list(head.graph.initializer)
    head.graph.ClearField("initializer")
    graph_bytes = head.graph.SerializeToString()
    head.ClearField("graph")
    pieces: list[tuple[bytes, np.ndarray | None]] = []
    offset = 0
    for tensor in initializers:
        array = weights.get(tensor.name)
        if array is None:
            body = tensor.SerializeToString()
            pieces.append((length_prefix(_INITIALIZER_FIELD, len(body)) + body, None))
            continue
        data = _little_endian(array)
        if tuple(tensor.dims) != data.shape:
            raise DecoderError(
                f"internal error: initializer {tensor.name!r} has dims {list(tensor.dims)}, data {data.shape}"
            )
        if data_handle is None:
            header = tensor.SerializeToString() + length_prefix(_RAW_DATA_FIELD, data.nbytes)
            pieces.append((length_prefix(_INITIALIZER_FIELD, len(header) + data.nbytes) + header, data))
            continue
        offset = -(-offset // ALIGNMENT) * ALIGNMENT
        data_handle.seek(offset)
        data_handle.write(memoryview(data).cast("B"))
        for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(data.nbytes))):
            tensor.external_data.add(key=key, value=value)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        offset += data.nbytes
        body = tensor.SerializeToString()
        pieces.append((length_prefix(_INITIALIZER_FIELD, len(body)) + body, None))
    graph_size = len(graph_bytes) + sum(len(header) + (0 if data is None else data.nbytes) for header, data in pieces)
    handle.write(head.SerializeToString())
    handle.write(length_prefix(_GRAPH_FIELD, graph_size))
    handle.write(graph_bytes)
    for header, data in pieces:
        handle.write(header)
        if data is not None:
            handle.write(memoryview(data).cast("B"))
