"""Reading Caffe files without Caffe: prototxt (text), caffemodel (binary), binaryproto.

Everything here returns the modern (V2, ``layer``) form of a net, whatever the file's
vintage: V1 nets (``layers`` with an enum ``type``) are upgraded the way Caffe's
``upgrade_proto.cpp`` does, and the legacy ``input``/``input_shape``/``input_dim``
header becomes explicit :class:`NetInput` entries. Weights are matched to deploy layers
BY LAYER NAME, as Caffe's ``Net::CopyTrainedLayersFrom`` does.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from decoder.caffe_proto import caffe_pb2
from decoder.errors import DecoderError

PathLike = str | os.PathLike[str]

# V1LayerParameter.LayerType -> V2 type string (upgrade_proto.cpp UpgradeV1LayerType).
V1_TYPE_NAMES: dict[int, str] = {
    caffe_pb2.V1LayerParameter.ABSVAL: "AbsVal",
    caffe_pb2.V1LayerParameter.ACCURACY: "Accuracy",
    caffe_pb2.V1LayerParameter.ARGMAX: "ArgMax",
    caffe_pb2.V1LayerParameter.BNLL: "BNLL",
    caffe_pb2.V1LayerParameter.CONCAT: "Concat",
    caffe_pb2.V1LayerParameter.CONTRASTIVE_LOSS: "ContrastiveLoss",
    caffe_pb2.V1LayerParameter.CONVOLUTION: "Convolution",
    caffe_pb2.V1LayerParameter.DATA: "Data",
    caffe_pb2.V1LayerParameter.DECONVOLUTION: "Deconvolution",
    caffe_pb2.V1LayerParameter.DROPOUT: "Dropout",
    caffe_pb2.V1LayerParameter.DUMMY_DATA: "DummyData",
    caffe_pb2.V1LayerParameter.EUCLIDEAN_LOSS: "EuclideanLoss",
    caffe_pb2.V1LayerParameter.ELTWISE: "Eltwise",
    caffe_pb2.V1LayerParameter.EXP: "Exp",
    caffe_pb2.V1LayerParameter.FLATTEN: "Flatten",
    caffe_pb2.V1LayerParameter.HDF5_DATA: "HDF5Data",
    caffe_pb2.V1LayerParameter.HDF5_OUTPUT: "HDF5Output",
    caffe_pb2.V1LayerParameter.HINGE_LOSS: "HingeLoss",
    caffe_pb2.V1LayerParameter.IM2COL: "Im2col",
    caffe_pb2.V1LayerParameter.IMAGE_DATA: "ImageData",
    caffe_pb2.V1LayerParameter.INFOGAIN_LOSS: "InfogainLoss",
    caffe_pb2.V1LayerParameter.INNER_PRODUCT: "InnerProduct",
    caffe_pb2.V1LayerParameter.LRN: "LRN",
    caffe_pb2.V1LayerParameter.MEMORY_DATA: "MemoryData",
    caffe_pb2.V1LayerParameter.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss",
    caffe_pb2.V1LayerParameter.MVN: "MVN",
    caffe_pb2.V1LayerParameter.POOLING: "Pooling",
    caffe_pb2.V1LayerParameter.POWER: "Power",
    caffe_pb2.V1LayerParameter.RELU: "ReLU",
    caffe_pb2.V1LayerParameter.SIGMOID: "Sigmoid",
    caffe_pb2.V1LayerParameter.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss",
    caffe_pb2.V1LayerParameter.SILENCE: "Silence",
    caffe_pb2.V1LayerParameter.SOFTMAX: "Softmax",
    caffe_pb2.V1LayerParameter.SOFTMAX_LOSS: "SoftmaxWithLoss",
    caffe_pb2.V1LayerParameter.SPLIT: "Split",
    caffe_pb2.V1LayerParameter.SLICE: "Slice",
    caffe_pb2.V1LayerParameter.TANH: "TanH",
    caffe_pb2.V1LayerParameter.WINDOW_DATA: "WindowData",
    caffe_pb2.V1LayerParameter.THRESHOLD: "Threshold",
}

# Parameter messages that V1 and V2 layers share (same message type, same field name).
_SHARED_PARAM_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in caffe_pb2.V1LayerParameter.DESCRIPTOR.fields
    if f.name.endswith("_param") and f.name in caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
)


@dataclass(frozen=True)
class NetInput:
    """One input blob of a deploy net: its name and declared shape (batch first)."""

    name: str
    shape: tuple[int, ...]


@dataclass
class CaffeNet:
    """A deploy net in V2 form, with the weights that matched its layers by name.

    ``input_source`` says where the first input's shape came from (for the conversion
    summary); ``dropped`` names the training-only layers removed from a train/test net.
    """

    name: str
    inputs: list[NetInput]
    layers: list[caffe_pb2.LayerParameter]
    weights: dict[str, list[np.ndarray]] = field(default_factory=dict)
    prototxt: str = ""
    caffemodel: str = ""
    input_source: str = ""
    dropped: list[str] = field(default_factory=list)
    data_layer_type: str = ""  # a train/test net's data layer ("ImageData", "Data"...), "" for deploy nets


#: Layers that feed a net while training (their first top is the image, the others labels).
DATA_LAYER_TYPES = frozenset({"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData"})
#: Layers that only score training: a deploy net has none of them. (Silence is dropped only
#: when it silences the labels: on other blobs it says "not an output", which deploy nets use.)
TRAINING_ONLY_TYPES = frozenset({"Accuracy", "HDF5Output"})


def _is_training_only(layer_type: str) -> bool:
    return layer_type in TRAINING_ONLY_TYPES or layer_type in DATA_LAYER_TYPES or layer_type.endswith("Loss")


def _read_bytes(path: PathLike, what: str) -> bytes:
    p = Path(path)
    if p.is_dir():
        raise DecoderError(f"is a directory, expected a {what} file", p)
    if p.exists() and not p.is_file():  # a FIFO or device: reading could block or never end
        raise DecoderError(f"is not a regular file (a device, FIFO or socket?), expected a {what} file", p)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DecoderError(f"{what} file not found", p) from None
    except OSError as exc:
        raise DecoderError(f"cannot read {what} file ({exc.strerror})", p) from None
    if not data or data.isspace():  # not strip(): that copies a 500 MB caffemodel starting with "\n"
        raise DecoderError(f"empty {what} file", p)
    return data


# text_format's wording for a field or enum value our schema (BVLC + NVIDIA Caffe) lacks.
_UNKNOWN_FIELD = re.compile(r'Message type "(?:caffe\.)?([\w.]+)" has no field named "?([\w.\[\]]+)"?')
_UNKNOWN_ENUM = re.compile(r'Enum type "(?:caffe\.)?([\w.]+)" has no value named "?([\w.]+)"?')


def parse_prototxt(
    text: str, path: PathLike | None = None, *, allow_unknown_field: bool = False, escape_non_ascii: bool = False
) -> caffe_pb2.NetParameter:
    """Parse protobuf text into a NetParameter; errors say line, column and what went wrong.

    A field or enum value we do not know is almost always another Caffe fork's extension
    (SSD, R-FCN, NVIDIA versions we lack...), so the message says so and names it.
    Unknown fields are NOT skipped for nets we run (one could change what a layer
    computes); ``allow_unknown_field`` is for train_val files read only for their data layer.
    ``escape_non_ascii``: the text was a Latin-1 fallback, so messages show bytes, not guesses.
    """
    net = caffe_pb2.NetParameter()
    try:
        text_format.Parse(text, net, allow_unknown_field=allow_unknown_field)
    except text_format.ParseError as exc:
        raise DecoderError(_describe_parse_error(exc, text, escape_non_ascii), path) from None
    except RecursionError:
        raise DecoderError("not a valid Caffe prototxt: nested too deeply", path) from None
    return net


def _slash_comment_line(text: str, line: int) -> bool:
    """Whether line ``line`` (1-based) holds a ``//`` outside a quoted string: a C++-style comment."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return False
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", lines[line - 1])
    return "//" in unquoted


def _describe_parse_error(exc: text_format.ParseError, text: str = "", escape_non_ascii: bool = False) -> str:
    where = f"line {exc.GetLine()}, column {exc.GetColumn()}" if exc.GetLine() else "somewhere"
    detail = _printable(re.sub(r"^\d+:\d+\s*:\s*", "", str(exc)).strip(), escape_non_ascii)
    if exc.GetLine() and _slash_comment_line(text, exc.GetLine()):
        return (
            f"line {exc.GetLine()}: '//' comments are not allowed in a prototxt (protobuf text format "
            "comments start with '#'); replace '//' with '#'"
        )
    fork = "a Caffe fork's extension? decoder knows BVLC and NVIDIA Caffe; remove it only if it does not change"
    if match := _UNKNOWN_FIELD.search(detail):
        message, name = match.groups()
        name = name.rstrip(".")
        return f"{where}: unknown field {name!r} in {message} ({fork} what the layer computes)"
    if match := _UNKNOWN_ENUM.search(detail):
        enum, value = match.groups()
        value = value.rstrip(".")
        return f"{where}: unknown value {value!r} for {enum} ({fork} what the layer computes)"
    return f"not a valid Caffe prototxt, syntax error at {where}: {detail}"


def _printable(text: str, escape_non_ascii: bool) -> str:
    """``text`` for a one-line message, without newlines; Latin-1 stand-ins as \\xNN escapes.

    :func:`decode_text_as` falls back to Latin-1 for bytes it cannot otherwise decode;
    printing those characters would be mojibake, so they are shown as the bytes they are.
    """
    escaped = "".join(f"\\x{ord(c):02x}" if escape_non_ascii and ord(c) >= 0x80 else c for c in text)
    return " ".join(escaped.split())


def _looks_like_text(data: bytes) -> bool:
    """Whether ``data`` starts as text (see :func:`decode_text`) without control characters."""
    text = decode_text(data[:4096])
    return text is not None and not any(ord(c) < 32 and c not in "\t\n\r\f\v" for c in text)


def read_prototxt(path: PathLike, *, allow_unknown_field: bool = False) -> caffe_pb2.NetParameter:
    """Read a (deploy or train_val) prototxt, refusing binary files with a clear message."""
    data = _read_bytes(path, "prototxt")
    text, encoding = decode_text_as(data)
    if text is None or "\x00" in text:
        raise DecoderError("is binary, not a text prototxt (is this the .caffemodel?)", path)
    return parse_prototxt(text, path, allow_unknown_field=allow_unknown_field, escape_non_ascii=encoding == "latin-1")


def decode_text(data: bytes) -> str | None:
    """Text as Windows and old editors save it, or None for binary data (see :func:`decode_text_as`)."""
    return decode_text_as(data)[0]


def decode_text_as(data: bytes) -> tuple[str | None, str]:
    """(text, encoding used): text as Windows and old editors save it, or None for binary data.

    UTF-8 with or without a BOM, UTF-16 with a BOM (Notepad's "Unicode"), GBK (Chinese
    Windows editors: the usual source of non-UTF-8 comments in shared prototxts) when the
    bytes decode as GBK and give Chinese characters, else Latin-1 when the bytes hold no
    control characters (a layer name with an accent, saved in the 2000s). Latin-1 never
    fails, so it is last; messages show its non-ASCII characters as byte escapes.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            return None, ""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    if any(byte < 32 and byte not in b"\t\n\r\x0b\x0c" for byte in data):
        return None, ""
    try:
        text = data.decode("gbk")
    except UnicodeDecodeError:
        pass
    else:
        if all(ord(c) < 0x80 or "\u3000" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef" for c in text):
            return text, "gbk"
    return data.decode("latin-1"), "latin-1"


_Message = TypeVar("_Message", caffe_pb2.NetParameter, caffe_pb2.BlobProto)


def _parse_binary(message: _Message, data: bytes, path: PathLike, what: str, text_hint: str = "") -> _Message:
    """Parse protobuf binary ``data`` into ``message``; text or garbage -> DecoderError naming ``what``."""
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        if _looks_like_text(data):
            raise DecoderError(f"is a text file, not a binary {what}{text_hint}", path) from None
        raise DecoderError(f"not a valid {what} (truncated or corrupt: {exc})", path) from None
    return message


def _caffemodel_bytes(path: PathLike) -> bytes:
    """The file's bytes, refusing a prototxt or a Git LFS pointer by its first bytes."""
    data = _read_bytes(path, "caffemodel")
    head = data[:200].lstrip()
    if head.startswith((b"name:", b"layer", b"input", b"layers", b"#")):
        raise DecoderError("is a text prototxt, not a binary .caffemodel", path)
    if head.startswith(b"version https://git-lfs"):
        raise DecoderError("is a Git LFS pointer, not the weights; run `git lfs pull`", path)
    return data


def read_caffemodel(path: PathLike, data: bytes | None = None) -> caffe_pb2.NetParameter:
    """Read trained weights (binary NetParameter), refusing text and garbage clearly."""
    data = _caffemodel_bytes(path) if data is None else data
    net = _parse_binary(caffe_pb2.NetParameter(), data, path, ".caffemodel", " (is this a prototxt?)")
    if not net.layer and not net.layers:
        if _looks_like_text(data):
            raise DecoderError("is a text file, not a binary .caffemodel (is this a prototxt?)", path)
        raise DecoderError("not a valid .caffemodel: it holds no layers", path)
    return net


def blob_to_array(blob: caffe_pb2.BlobProto) -> np.ndarray:
    """A BlobProto as float32, shaped by ``shape`` or by the legacy num/channels/height/width."""
    values = np.asarray(blob.data if len(blob.data) else blob.double_data, dtype=np.float32)
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    elif blob.num or blob.channels or blob.height or blob.width:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = (values.size,)
    if any(d < 0 for d in shape):
        raise DecoderError(f"blob declares a negative dimension in shape {list(shape)}")
    if math.prod(shape) != values.size:  # exact: np.prod would overflow on forged shapes
        raise DecoderError(f"blob declares shape {list(shape)} but holds {values.size} values")
    return values.reshape(shape)


def read_binaryproto(path: PathLike) -> np.ndarray:
    """Read a mean.binaryproto (BlobProto) as a float32 array in its declared shape."""
    data = _read_bytes(path, "binaryproto")
    blob = _parse_binary(caffe_pb2.BlobProto(), data, path, ".binaryproto blob")
    try:
        array = blob_to_array(blob)
    except DecoderError as exc:
        raise DecoderError(exc.message, path) from None
    if array.size == 0:
        if _looks_like_text(data):
            raise DecoderError("is a text file, not a binary .binaryproto blob", path)
        raise DecoderError("the blob holds no values", path)
    return array


# V0 type strings -> V1 enum (upgrade_proto.cpp UpgradeV0LayerType).
_V1 = caffe_pb2.V1LayerParameter
V0_TYPES: dict[str, int] = {
    "accuracy": _V1.ACCURACY,
    "bnll": _V1.BNLL,
    "concat": _V1.CONCAT,
    "conv": _V1.CONVOLUTION,
    "data": _V1.DATA,
    "dropout": _V1.DROPOUT,
    "euclidean_loss": _V1.EUCLIDEAN_LOSS,
    "flatten": _V1.FLATTEN,
    "hdf5_data": _V1.HDF5_DATA,
    "hdf5_output": _V1.HDF5_OUTPUT,
    "im2col": _V1.IM2COL,
    "images": _V1.IMAGE_DATA,
    "infogain_loss": _V1.INFOGAIN_LOSS,
    "innerproduct": _V1.INNER_PRODUCT,
    "lrn": _V1.LRN,
    "multinomial_logistic_loss": _V1.MULTINOMIAL_LOGISTIC_LOSS,
    "pool": _V1.POOLING,
    "relu": _V1.RELU,
    "sigmoid": _V1.SIGMOID,
    "softmax": _V1.SOFTMAX,
    "softmax_loss": _V1.SOFTMAX_LOSS,
    "split": _V1.SPLIT,
    "tanh": _V1.TANH,
    "window_data": _V1.WINDOW_DATA,
}


def fold_v0_padding_layers(layers: Iterable[caffe_pb2.V1LayerParameter]) -> list[caffe_pb2.V1LayerParameter]:
    """Drop V0 "padding" layers, moving their pad into the conv/pool that reads their output.

    upgrade_proto.cpp UpgradeV0PaddingLayers: the consumer takes the padding layer's
    ``pad`` and reads the padding layer's own bottom instead.
    """
    layers = list(layers)
    folded: list[caffe_pb2.V1LayerParameter] = []
    last_writer: dict[str, int] = {}
    for index, connection in enumerate(layers):
        if connection.layer.type != "padding":
            folded.append(caffe_pb2.V1LayerParameter())
            folded[-1].CopyFrom(connection)
        for j, blob in enumerate(connection.bottom):
            source = layers[last_writer[blob]] if blob in last_writer else None
            if source is None or source.layer.type != "padding":
                continue
            if connection.layer.type not in ("conv", "pool") or len(connection.bottom) != 1:
                raise DecoderError(
                    f"V0 padding layer {source.layer.name!r} feeds {connection.layer.name!r} "
                    f"({connection.layer.type or 'no type'}); Caffe only folds padding into a conv or pool"
                )
            if len(source.bottom) != 1 or len(source.top) != 1:
                raise DecoderError(f"V0 padding layer {source.layer.name!r} must have one bottom and one top")
            folded[-1].layer.pad = source.layer.pad
            folded[-1].bottom[j] = source.bottom[0]
        for blob in connection.top:
            last_writer[blob] = index
    return folded


def upgrade_v0_layer(connection: caffe_pb2.V1LayerParameter) -> caffe_pb2.V1LayerParameter:
    """One V0 layer as V1 (upgrade_proto.cpp UpgradeV0LayerParameter), the fields deploy nets use."""
    v0 = connection.layer
    v1 = caffe_pb2.V1LayerParameter(name=v0.name, bottom=connection.bottom, top=connection.top)
    kind = v0.type
    if v0.HasField("type"):
        v1.type = V0_TYPES.get(kind, _V1.NONE)
    # Caffe reads the V0 layer's blobs; OpenCV's port reads the wrapper's: accept either.
    v1.blobs.extend(v0.blobs or connection.blobs)
    if kind == "conv":
        conv = v1.convolution_param
        if v0.HasField("num_output"):
            conv.num_output = v0.num_output
        if v0.HasField("biasterm"):
            conv.bias_term = v0.biasterm
        conv.pad.extend([v0.pad] if v0.HasField("pad") else [])
        conv.kernel_size.extend([v0.kernelsize] if v0.HasField("kernelsize") else [])
        conv.stride.extend([v0.stride] if v0.HasField("stride") else [])
        if v0.HasField("group"):
            conv.group = v0.group
    elif kind == "pool":
        pool = v1.pooling_param
        for v0_name, name in (("pad", "pad"), ("kernelsize", "kernel_size"), ("stride", "stride")):
            if v0.HasField(v0_name):
                setattr(pool, name, getattr(v0, v0_name))
        if v0.HasField("pool"):
            pool.pool = v0.pool  # V0 and V2 PoolMethod share their numbers (MAX 0, AVE 1, STOCHASTIC 2)
    elif kind == "innerproduct":
        if v0.HasField("num_output"):
            v1.inner_product_param.num_output = v0.num_output
        if v0.HasField("biasterm"):
            v1.inner_product_param.bias_term = v0.biasterm
    if v0.HasField("dropout_ratio"):
        v1.dropout_param.dropout_ratio = v0.dropout_ratio
    for field_name in ("local_size", "alpha", "beta", "k"):
        if v0.HasField(field_name):
            setattr(v1.lrn_param, field_name, getattr(v0, field_name))
    if v0.HasField("concat_dim"):
        v1.concat_param.concat_dim = v0.concat_dim
    return v1


def upgrade_v1_layer(v1: caffe_pb2.V1LayerParameter) -> caffe_pb2.LayerParameter:
    """One V1 (or V0) layer in V2 form (upgrade_proto.cpp UpgradeV1LayerParameter)."""
    if v1.HasField("layer"):
        v0_type = v1.layer.type
        layer = upgrade_v1_layer(upgrade_v0_layer(v1))
        if v0_type not in V0_TYPES:
            layer.type = f"V0:{v0_type or '<no type>'}"
        return layer
    layer = caffe_pb2.LayerParameter(name=v1.name, type=V1_TYPE_NAMES.get(v1.type, f"V1:{v1.type}"))
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    layer.blobs.extend(v1.blobs)
    layer.loss_weight.extend(v1.loss_weight)
    for name in _SHARED_PARAM_FIELDS:
        if v1.HasField(name):
            getattr(layer, name).CopyFrom(getattr(v1, name))
    return layer


def upgraded_layers(net: caffe_pb2.NetParameter) -> list[caffe_pb2.LayerParameter]:
    """The net's layers in V2 form, whichever field (``layer`` or V1 ``layers``) holds them."""
    if net.layer and net.layers:
        raise DecoderError("the net mixes V2 `layer` and V1 `layers` fields")
    if any(v1.HasField("layer") for v1 in net.layers):
        # V0 (pre-2014): upgrade_proto.cpp UpgradeV0Net folds padding layers, then V0 -> V1.
        return [upgrade_v1_layer(v0) for v0 in fold_v0_padding_layers(net.layers)]
    if net.layers:
        return [upgrade_v1_layer(v1) for v1 in net.layers]
    return list(net.layer)


def _state_meets_rule(rule: caffe_pb2.NetStateRule, phase: int) -> bool:
    if rule.HasField("phase") and rule.phase != phase:
        return False
    # Deploy nets run at level 0 with no stages (Caffe's default NetState).
    if rule.HasField("min_level") and rule.min_level > 0:
        return False
    if rule.HasField("max_level") and rule.max_level < 0:
        return False
    return not rule.stage


def layer_in_phase(layer: caffe_pb2.LayerParameter, phase: int = caffe_pb2.TEST) -> bool:
    """Caffe's Net::StateMeetsRule for our default state (phase, level 0, no stages)."""
    if layer.include:
        return any(_state_meets_rule(rule, phase) for rule in layer.include)
    return not any(_state_meets_rule(rule, phase) for rule in layer.exclude)


def net_inputs(net: caffe_pb2.NetParameter, layers: Iterable[caffe_pb2.LayerParameter]) -> list[NetInput]:
    """The legacy header inputs plus those of Input layers, with their declared shapes."""
    inputs: list[NetInput] = []
    names = list(net.input)
    if names:
        if net.input_shape:
            if len(net.input_shape) not in (1, len(names)):
                raise DecoderError(f"{len(names)} inputs but {len(net.input_shape)} input_shape entries")
            shapes = [tuple(int(d) for d in s.dim) for s in net.input_shape]
            if len(shapes) == 1:
                shapes *= len(names)
        elif net.input_dim:
            dims = [int(d) for d in net.input_dim]
            if len(dims) != 4 * len(names):
                raise DecoderError(f"{len(names)} inputs need {4 * len(names)} input_dim values, got {len(dims)}")
            shapes = [tuple(dims[4 * i : 4 * i + 4]) for i in range(len(names))]
        else:
            raise DecoderError(f"input {names[0]!r} has no input_shape or input_dim")
        inputs.extend(NetInput(n, s) for n, s in zip(names, shapes, strict=True))
    for layer in layers:
        if layer.type != "Input":
            continue
        shapes = [tuple(int(d) for d in s.dim) for s in layer.input_param.shape]
        if not shapes:
            raise DecoderError(f"Input layer {layer.name!r} declares no shape")
        if len(shapes) == 1:
            shapes *= len(layer.top)
        if len(shapes) != len(layer.top):
            raise DecoderError(f"Input layer {layer.name!r} has {len(layer.top)} tops but {len(shapes)} shapes")
        inputs.extend(NetInput(t, s) for t, s in zip(layer.top, shapes, strict=True))
    seen: set[str] = set()
    for net_input in inputs:
        if net_input.name in seen:  # Caffe: "Top blob 'data' produced by multiple sources"
            raise DecoderError(f"input {net_input.name!r} is declared twice")
        seen.add(net_input.name)
    return inputs


def read_weights(path: PathLike) -> dict[str, list[np.ndarray]]:
    """Every layer's blobs by layer name; the first layer of a name wins, as in Caffe.

    The arrays are read-only views of the file's bytes (:mod:`decoder.caffemodel_scan`):
    parsing a caffemodel with protobuf and copying its floats into numpy held the weights
    three times over (3.8 GB for VGG-16's 528 MB). Files the scanner does not take (V0
    nets, unpacked or damaged blobs) go through protobuf, whose errors name the problem.
    """
    from decoder.caffemodel_scan import scan_weights

    data = _caffemodel_bytes(path)
    scanned = scan_weights(data)
    if scanned is not None:
        try:
            return {name: [blob.to_array() for blob in blobs] for name, blobs in scanned.items()}
        except DecoderError as exc:
            raise DecoderError(exc.message, path) from None
    net = read_caffemodel(path, data)
    del data
    weights: dict[str, list[np.ndarray]] = {}
    try:
        for layer in upgraded_layers(net):
            if layer.blobs and layer.name not in weights:
                weights[layer.name] = [blob_to_array(b) for b in layer.blobs]
    except DecoderError as exc:
        raise DecoderError(exc.message, path) from None
    return weights


def prune_to_deploy(layers: list[caffe_pb2.LayerParameter]) -> tuple[list[caffe_pb2.LayerParameter], list[str]]:
    """The deploy net inside a train/test net: (kept layers, names of dropped layers).

    Dropped: data layers, Accuracy, every *Loss, HDF5Output, and every layer that
    reads a blob computed from the labels (a data layer's tops after the first). A
    SoftmaxWithLoss leaves its input (the logits) as the net's output; predictions turn
    logits into probabilities with a softmax, as the deploy net's Softmax would.
    """
    labels: set[str] = set()
    kept: list[caffe_pb2.LayerParameter] = []
    dropped: list[str] = []
    for layer in layers:
        if layer.type in DATA_LAYER_TYPES:
            labels.update(layer.top[1:])
            dropped.append(layer.name)
        elif _is_training_only(layer.type) or labels.intersection(layer.bottom):
            labels.update(top for top in layer.top if top not in layer.bottom or top in labels)
            dropped.append(layer.name)
        else:
            kept.append(layer)
    return kept, dropped


def _data_layer_input(
    layers: list[caffe_pb2.LayerParameter], weights_channels: int | None
) -> tuple[NetInput, str] | None:
    """The image input a train/test net's data layer states: (input, where its size came from), if stated.

    ImageData: ``new_height``/``new_width`` and ``is_color``; MemoryData: its channels,
    height and width; any data layer: ``transform_param.crop_size`` (the size Caffe crops
    to), with the channels read from the first convolution's weights when the layer does
    not say them. Raises naming ``--input-shape`` when a data layer states no size.
    """
    data = next((layer for layer in layers if layer.type in DATA_LAYER_TYPES and layer.top), None)
    if data is None:
        return None
    name, kind = data.top[0], data.type
    channels: int | None = None
    height = width = 0
    source = ""
    if kind == "MemoryData" and data.memory_data_param.height:
        param = data.memory_data_param
        channels, height, width = int(param.channels), int(param.height), int(param.width)
        source = f"{kind} layer {data.name!r} memory_data_param"
    if kind == "ImageData":
        param = data.image_data_param
        channels = 3 if param.is_color else 1
        if param.new_height and param.new_width:
            height, width = int(param.new_height), int(param.new_width)
            source = f"{kind} layer {data.name!r} image_data_param new_height/new_width"
    crop = int(data.transform_param.crop_size) or int(data.image_data_param.crop_size) or int(data.data_param.crop_size)
    if crop:
        height = width = crop
        source = f"{kind} layer {data.name!r} crop_size"
    if channels is None:
        channels = weights_channels
        source += " (channels from the first convolution's weights)"
    if not (height and width and channels):
        raise DecoderError(
            f"the net reads its images from {kind} layer {data.name!r}, which does not state their size; "
            "give it with --input-shape C,H,W (e.g. --input-shape 3,224,224)"
        )
    return NetInput(name, (1, channels, height, width)), source


def _first_conv_channels(layers: list[caffe_pb2.LayerParameter], weights: dict[str, list[np.ndarray]]) -> int | None:
    """Input channels of the first Convolution with weights (weight shape (out, in/group, kh, kw))."""
    for layer in layers:
        if layer.type == "Convolution" and weights.get(layer.name):
            blob = weights[layer.name][0]
            if blob.ndim == 4:
                return int(blob.shape[1]) * max(int(layer.convolution_param.group), 1)
    return None


def load_net(
    prototxt: PathLike,
    caffemodel: PathLike | None,
    input_shape: tuple[int, int, int] | None = None,
) -> CaffeNet:
    """The deploy net (TEST phase) with its weights matched by layer name.

    A train/test or V1 "prediction" prototxt is reduced to its deploy net
    (:func:`prune_to_deploy`); its input comes from ``input_shape`` (C, H, W), else from
    what its data layer states. ``input_shape`` also replaces a declared input's C, H, W.
    """
    proto = read_prototxt(prototxt)
    try:
        layers = [layer for layer in upgraded_layers(proto) if layer_in_phase(layer)]
        inputs = net_inputs(proto, layers)
    except DecoderError as exc:
        raise DecoderError(exc.message, prototxt) from None
    if not layers:
        raise DecoderError("the prototxt defines no layers", prototxt)
    weights = read_weights(caffemodel) if caffemodel is not None else {}
    file_name = Path(prototxt).name
    input_source = f"{file_name} input declaration"
    kept, dropped = prune_to_deploy(layers)
    if input_shape is not None:
        name = inputs[0].name if inputs else next((x.top[0] for x in layers if x.type in DATA_LAYER_TYPES), "data")
        inputs = [NetInput(name, (1, *input_shape)), *inputs[1:]]
        input_source = "option --input-shape"
    elif not inputs:
        try:
            found = _data_layer_input(layers, _first_conv_channels(kept, weights))
        except DecoderError as exc:
            raise DecoderError(exc.message, prototxt) from None
        if found is None:
            raise DecoderError(
                "the net declares no input (no `input:` header, Input layer or data layer); "
                "give its shape with --input-shape C,H,W",
                prototxt,
            )
        inputs = [found[0]]
        input_source = f"{file_name} {found[1]}"
    return CaffeNet(
        name=proto.name,
        inputs=inputs,
        layers=[layer for layer in kept if layer.type != "Input"],
        weights=weights,
        prototxt=str(prototxt),
        caffemodel="" if caffemodel is None else str(caffemodel),
        input_source=input_source,
        dropped=dropped,
        data_layer_type=next((x.type for x in layers if x.type in DATA_LAYER_TYPES), ""),
    )


def deploy_prototxt(net: CaffeNet) -> str:
    """The net as a deploy prototxt (V2 layers, ``input``/``input_shape`` header): what a train/test net reduces to.

    For tools that read only deploy nets (OpenCV's importer, for ``--verify``), after
    :func:`load_net` dropped the training layers and worked out the input shape.
    """
    proto = caffe_pb2.NetParameter(name=net.name)
    for net_input in net.inputs:
        proto.input.append(net_input.name)
        proto.input_shape.add().dim.extend(net_input.shape)
    for layer in net.layers:
        kept = proto.layer.add()
        kept.CopyFrom(layer)
        del kept.blobs[:]
        kept.ClearField("include")
        kept.ClearField("exclude")
    return text_format.MessageToString(proto)
