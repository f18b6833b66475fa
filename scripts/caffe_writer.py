"""Write a DIGITS-style LeNet as real Caffe files, using only our own protobuf schema.

Why this exists: the project needs a demo model whose every byte it produced itself
(no third-party weights in git), yet the files must be indistinguishable in structure
from what NVIDIA DIGITS exports, so that the converter and the diagnostics are
exercised on the same shapes of input users bring. The layer list mirrors DIGITS's
standard LeNet (Power "scale" 0.0125, conv 20/50 k5, MAX pools 2/2, ip 500, ReLU, ip 10,
Softmax) and the mean file follows DIGITS's ``_save_means`` (legacy num/channels/height/
width fields, values rounded to uint8, stored as floats).

Nothing here trains or evaluates; see ``build_demo_lenet.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from decoder.caffe_proto import caffe_pb2
from decoder.wire import length_prefix

INPUT_SCALE = 0.0125  # DIGITS LeNet: 1/80, applied by the deploy Power layer and by transform_param
LENET_SHAPE = (1, 28, 28)  # C, H, W of the DIGITS MNIST dataset


def _learnable_params(layer: caffe_pb2.LayerParameter) -> None:
    """DIGITS's LeNet trains biases twice as fast (lr_mult 2); keep that in the files."""
    layer.param.add().lr_mult = 1.0
    layer.param.add().lr_mult = 2.0


def _convolution(name: str, bottom: str, num_output: int) -> caffe_pb2.LayerParameter:
    layer = caffe_pb2.LayerParameter(name=name, type="Convolution", bottom=[bottom], top=[name])
    _learnable_params(layer)
    conv = layer.convolution_param
    conv.num_output = num_output
    conv.kernel_size.append(5)
    conv.stride.append(1)
    conv.weight_filler.type = "xavier"
    conv.bias_filler.type = "constant"
    return layer


def _max_pool(name: str, bottom: str) -> caffe_pb2.LayerParameter:
    layer = caffe_pb2.LayerParameter(name=name, type="Pooling", bottom=[bottom], top=[name])
    layer.pooling_param.pool = caffe_pb2.PoolingParameter.MAX
    layer.pooling_param.kernel_size = 2
    layer.pooling_param.stride = 2
    return layer


def _inner_product(name: str, bottom: str, num_output: int) -> caffe_pb2.LayerParameter:
    layer = caffe_pb2.LayerParameter(name=name, type="InnerProduct", bottom=[bottom], top=[name])
    _learnable_params(layer)
    ip = layer.inner_product_param
    ip.num_output = num_output
    ip.weight_filler.type = "xavier"
    ip.bias_filler.type = "constant"
    return layer


def lenet_body(bottom: str = "scaled") -> list[caffe_pb2.LayerParameter]:
    """conv1 .. ip2 of DIGITS's LeNet, shared by deploy and train_val (as in DIGITS)."""
    relu = caffe_pb2.LayerParameter(name="relu1", type="ReLU", bottom=["ip1"], top=["ip1"])
    return [
        _convolution("conv1", bottom, 20),
        _max_pool("pool1", "conv1"),
        _convolution("conv2", "pool1", 50),
        _max_pool("pool2", "conv2"),
        _inner_product("ip1", "pool2", 500),
        relu,
        _inner_product("ip2", "ip1", 10),
    ]


def deploy_net(batch: int = 1) -> caffe_pb2.NetParameter:
    """The deploy net the way DIGITS writes it: ``input:`` + ``input_shape``, no Input layer.

    The Power layer carries the 0.0125 scale because DIGITS inference only subtracts the
    mean outside the net; a converter that drops it reproduces the classic
    "always predicts the same digit" failure.
    """
    net = caffe_pb2.NetParameter()
    net.input.append("data")
    net.input_shape.add().dim.extend([batch, *LENET_SHAPE])
    scale = net.layer.add(name="scale", type="Power", bottom=["data"], top=["scaled"])
    scale.power_param.scale = INPUT_SCALE
    net.layer.extend(lenet_body("scaled"))
    net.layer.add(name="softmax", type="Softmax", bottom=["ip2"], top=["softmax"])
    return net


def _data_layer(name: str, phase: int, source: str, batch_size: int, mean_file: str) -> caffe_pb2.LayerParameter:
    layer = caffe_pb2.LayerParameter(name=name, type="Data", top=["scaled", "label"])
    layer.include.add().phase = phase
    layer.transform_param.scale = INPUT_SCALE
    layer.transform_param.mean_file = mean_file
    layer.data_param.source = source
    layer.data_param.batch_size = batch_size
    layer.data_param.backend = caffe_pb2.DataParameter.LMDB
    return layer


def train_val_net(
    mean_file: str = "mean.binaryproto",
    train_source: str = "train_db",
    val_source: str = "val_db",
    train_batch: int = 64,
    val_batch: int = 32,
) -> caffe_pb2.NetParameter:
    """DIGITS's train_val: Data layers scale and subtract the mean, so there is no Power layer.

    This is the file a converter reads to learn ``use_mean`` (mean_file -> image mean).
    The LMDB sources are named but not written: nobody trains from them.
    """
    net = caffe_pb2.NetParameter()
    net.layer.append(_data_layer("train-data", caffe_pb2.TRAIN, train_source, train_batch, mean_file))
    net.layer.append(_data_layer("val-data", caffe_pb2.TEST, val_source, val_batch, mean_file))
    net.layer.extend(lenet_body("scaled"))
    accuracy = net.layer.add(name="accuracy", type="Accuracy", bottom=["ip2", "label"], top=["accuracy"])
    accuracy.include.add().phase = caffe_pb2.TEST
    net.layer.add(name="loss", type="SoftmaxWithLoss", bottom=["ip2", "label"], top=["loss"])
    return net


def array_blob(array: np.ndarray) -> caffe_pb2.BlobProto:
    """A weight blob in the modern form (``shape``), as Caffe >= 1.0 snapshots store it."""
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(int(d) for d in array.shape)
    blob.data.extend(np.asarray(array, dtype=np.float32).ravel().tolist())
    return blob


def mean_blob(mean_chw: np.ndarray) -> caffe_pb2.BlobProto:
    """DIGITS's mean.binaryproto: legacy num=1/channels/height/width, uint8 values as floats."""
    mean = np.asarray(mean_chw)
    if mean.ndim != 3 or mean.dtype != np.uint8:
        raise ValueError(f"the mean must be a uint8 (C, H, W) array, got {mean.dtype} {mean.shape}")
    blob = caffe_pb2.BlobProto(num=1, channels=mean.shape[0], height=mean.shape[1], width=mean.shape[2])
    blob.data.extend(mean.astype(np.float64).ravel().tolist())
    return blob


def snapshot_net(
    train_val: caffe_pb2.NetParameter, weights: Mapping[str, Sequence[np.ndarray]]
) -> caffe_pb2.NetParameter:
    """A ``snapshot_iter_N.caffemodel``: the TRAIN-phase layers of train_val, learnable ones with blobs.

    Caffe's ``Net::ToProto`` writes every layer of the training net (Data and loss
    included) and attaches ``blobs`` to the learnable ones; converters must match them
    to the deploy net BY NAME, so the same names are used here.
    """
    net = caffe_pb2.NetParameter(name=train_val.name)
    unused = set(weights)
    for layer in train_val.layer:
        if any(rule.phase == caffe_pb2.TEST for rule in layer.include):
            continue
        copy = net.layer.add()
        copy.CopyFrom(layer)
        copy.phase = caffe_pb2.TRAIN
        for array in weights.get(layer.name, ()):
            copy.blobs.append(array_blob(array))
        unused.discard(layer.name)
    if unused:
        raise ValueError(f"weights for layers not in the net: {sorted(unused)}")
    return net


def solver_text(base_lr: float, momentum: float, weight_decay: float, max_iter: int, stepsize: int) -> str:
    """solver.prototxt with the hyper-parameters actually used (our schema has no SolverParameter).

    DIGITS ships this file in every download; writing the real values keeps the archive
    honest about how the weights came to be.
    """
    lines = [
        'net: "train_val.prototxt"',
        f"base_lr: {base_lr}",
        'lr_policy: "step"',
        "gamma: 0.1",
        f"stepsize: {stepsize}",
        f"momentum: {momentum}",
        f"weight_decay: {weight_decay}",
        f"max_iter: {max_iter}",
        f"snapshot: {max_iter}",
        'snapshot_prefix: "snapshot"',
        "solver_mode: CPU",
        'type: "SGD"',
    ]
    return "\n".join(lines) + "\n"


def write_text(message: caffe_pb2.NetParameter, path: Path) -> None:
    """Protobuf TEXT, the format of every .prototxt."""
    path.write_text(text_format.MessageToString(message), encoding="utf-8")


def write_binary(message: caffe_pb2.NetParameter | caffe_pb2.BlobProto, path: Path) -> None:
    """Protobuf BINARY, the format of .caffemodel and .binaryproto."""
    path.write_bytes(message.SerializeToString())


_NET_LAYER_FIELD = caffe_pb2.NetParameter.DESCRIPTOR.fields_by_name["layer"].number  # 100
_LAYER_BLOBS_FIELD = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name["blobs"].number  # 7
_BLOB_DATA_FIELD = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name["data"].number  # 5, packed float


def write_caffemodel(
    path: Path, layers: Iterable[tuple[caffe_pb2.LayerParameter, Sequence[np.ndarray]]], name: str = ""
) -> None:
    """A binary .caffemodel written layer by layer: each layer's blobs go straight from numpy to the file.

    The file parses to the same message as ``NetParameter.SerializeToString()`` of the same
    layers (blobs with ``shape`` and packed float ``data``, as Caffe >= 1.0 writes them; the
    blobs field comes last in each layer), but no protobuf message ever holds the floats:
    building VGG-16's 138 M parameters as one message (``array_blob``'s ``tolist``) needs
    several GB and minutes; this needs one layer's arrays.
    """
    with open(path, "wb") as handle:
        if name:
            handle.write(caffe_pb2.NetParameter(name=name).SerializeToString())
        for layer, arrays in layers:
            head = caffe_pb2.LayerParameter()
            head.CopyFrom(layer)
            head.ClearField("blobs")
            head_bytes = head.SerializeToString()
            blobs = []
            for array in arrays:
                data = np.ascontiguousarray(array, dtype="<f4")
                shape = caffe_pb2.BlobProto()
                shape.shape.dim.extend(int(d) for d in data.shape)
                prefix = shape.SerializeToString() + length_prefix(_BLOB_DATA_FIELD, data.nbytes)
                blobs.append((prefix, data))
            blob_fields = [
                (length_prefix(_LAYER_BLOBS_FIELD, len(prefix) + data.nbytes) + prefix, data) for prefix, data in blobs
            ]
            size = len(head_bytes) + sum(len(header) + data.nbytes for header, data in blob_fields)
            handle.write(length_prefix(_NET_LAYER_FIELD, size) + head_bytes)
            for header, data in blob_fields:
                handle.write(header)
                handle.write(memoryview(data).cast("B"))


def read_snapshot_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """Blobs of a caffemodel by layer name, each reshaped by its ``shape`` (round-trip checks)."""
    net = caffe_pb2.NetParameter()
    net.ParseFromString(path.read_bytes())
    return {
        layer.name: [np.asarray(b.data, dtype=np.float32).reshape(tuple(b.shape.dim)) for b in layer.blobs]
        for layer in net.layer
        if layer.blobs
    }
