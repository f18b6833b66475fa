"""Legacy V0 (pre-2014, separate "padding" layers) and V1 (enum types) nets, against OpenCV.

Both OpenCV and our reader upgrade the files the way Caffe's upgrade_proto.cpp does
(UpgradeV0Net: padding layers folded into the next conv/pool, V0 fields moved to their
parameter messages; then UpgradeV1Net), so one deploy net in each format must compute
the same as OpenCV's import of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from decoder.caffe_io import load_net
from decoder.caffe_proto import caffe_pb2
from decoder.errors import DecoderError, UnsupportedLayersError
from tests.caffe_nets import NetFiles, array_to_blob, assert_matches_opencv, convert_files, random_blob

V1 = caffe_pb2.V1LayerParameter


def _v0_net(
    tmp_path: Path, layers: list[tuple[dict, list[str], list[str], list[tuple[int, ...]]]], blobs_in_wrapper_too=True
) -> NetFiles:
    """A V0 deploy net: ``layers { layer { name type ... } bottom top }``, blobs in the V0 layer.

    OpenCV's port of UpgradeV0LayerParameter takes the blobs from the V1 wrapper (field 6)
    where upgrade_proto.cpp reads the V0 layer's own (field 50); by default the caffemodel
    carries them in both, so that OpenCV can judge the computation.
    """
    rng = np.random.default_rng(3)
    proto = caffe_pb2.NetParameter(name="v0")
    proto.input.append("data")
    proto.input_dim.extend([1, 3, 11, 11])
    model = caffe_pb2.NetParameter()
    model.CopyFrom(proto)  # Caffe's Net::ToProto also wrote the inputs into the caffemodel
    for fields, bottoms, tops, blob_shapes in layers:
        connection = proto.layers.add(bottom=bottoms, top=tops)
        for key, value in fields.items():
            setattr(connection.layer, key, value)
        trained = model.layers.add()
        trained.CopyFrom(connection)
        for shape in blob_shapes:
            trained.layer.blobs.append(array_to_blob(random_blob(rng, shape), legacy=True))
        if blobs_in_wrapper_too:
            trained.blobs.extend(trained.layer.blobs)
    files = NetFiles(tmp_path / "v0.prototxt", tmp_path / "v0.caffemodel")
    files.prototxt.write_text(text_format.MessageToString(proto))
    files.caffemodel.write_bytes(model.SerializeToString())
    return files


V0_LAYERS = [
    ({"name": "pad1", "type": "padding", "pad": 2}, ["data"], ["pad1"], []),
    ({"name": "conv1", "type": "conv", "num_output": 4, "kernelsize": 5, "stride": 2}, ["pad1"], ["conv1"],
     [(4, 3, 5, 5), (4,)]),
    ({"name": "relu1", "type": "relu"}, ["conv1"], ["conv1"], []),
    ({"name": "pad2", "type": "padding", "pad": 1}, ["conv1"], ["pad2"], []),
    ({"name": "pool1", "type": "pool", "pool": caffe_pb2.V0LayerParameter.AVE, "kernelsize": 3, "stride": 2},
     ["pad2"], ["pool1"], []),
    ({"name": "norm1", "type": "lrn", "local_size": 3, "alpha": 0.5, "beta": 0.75}, ["pool1"], ["norm1"], []),
    ({"name": "conv2", "type": "conv", "num_output": 6, "kernelsize": 1, "group": 2, "biasterm": False},
     ["norm1"], ["conv2"], [(6, 2, 1, 1)]),
    ({"name": "pool2", "type": "pool", "pool": caffe_pb2.V0LayerParameter.MAX, "kernelsize": 2, "stride": 1},
     ["conv2"], ["pool2"], []),
    ({"name": "fc", "type": "innerproduct", "num_output": 5}, ["pool2"], ["fc"], [(5, 54), (5,)]),
    ({"name": "drop", "type": "dropout", "dropout_ratio": 0.5}, ["fc"], ["fc"], []),
    ({"name": "prob", "type": "softmax"}, ["fc"], ["prob"], []),
]  # fmt: skip


def test_v0_net_matches_opencv(tmp_path: Path) -> None:
    files = _v0_net(tmp_path, V0_LAYERS)
    net = load_net(files.prototxt, files.caffemodel)
    assert [layer.name for layer in net.layers if layer.type == "Convolution"] == ["conv1", "conv2"]
    assert list(net.layers[0].convolution_param.pad) == [2]  # folded from pad1
    assert net.layers[0].bottom == ["data"]
    assert net.layers[2].pooling_param.pad == 1  # folded from pad2
    feeds = [{"data": np.random.default_rng(b).uniform(-2, 2, (b, 3, 11, 11)).astype(np.float32)} for b in (1, 3)]
    assert_matches_opencv(files, tmp_path, inputs=feeds)


def test_v0_weights_come_from_the_v0_layer(tmp_path: Path) -> None:
    """Caffe reads V0 weights from the nested layer's blobs (upgrade_proto.cpp)."""
    files = _v0_net(tmp_path, V0_LAYERS, blobs_in_wrapper_too=False)
    net = load_net(files.prototxt, files.caffemodel)
    assert [w.shape for w in net.weights["conv1"]] == [(4, 3, 5, 5), (1, 1, 1, 4)]
    assert sorted(net.weights) == ["conv1", "conv2", "fc"]


def test_v0_padding_into_a_non_conv_layer_is_refused(tmp_path: Path) -> None:
    layers = [
        ({"name": "pad1", "type": "padding", "pad": 1}, ["data"], ["pad1"], []),
        ({"name": "relu", "type": "relu"}, ["pad1"], ["relu"], []),
    ]
    files = _v0_net(tmp_path, layers)
    with pytest.raises(DecoderError, match="only folds padding into a conv or pool"):
        load_net(files.prototxt, files.caffemodel)


def test_v0_unknown_type_is_reported(tmp_path: Path) -> None:
    files = _v0_net(tmp_path, [({"name": "odd", "type": "warp"}, ["data"], ["odd"], [])])
    with pytest.raises(UnsupportedLayersError, match="V0:warp"):
        convert_files(files)


def _v1_net(tmp_path: Path) -> NetFiles:
    """A V1 deploy net (``layers { type: ENUM }``) with V1-era 4-D blob shapes."""
    rng = np.random.default_rng(5)
    proto = caffe_pb2.NetParameter(name="v1")
    proto.input.append("data")
    proto.input_dim.extend([1, 3, 9, 9])
    model = caffe_pb2.NetParameter(name="v1")
    specs = [
        ("conv1", V1.CONVOLUTION, ["data"], ["conv1"], {"convolution_param": "num_output: 4 kernel_size: 3 pad: 1"},
         [(4, 3, 3, 3), (4,)]),
        ("relu1", V1.RELU, ["conv1"], ["conv1"], {}, []),
        ("pool1", V1.POOLING, ["conv1"], ["pool1"], {"pooling_param": "pool: MAX kernel_size: 3 stride: 2"}, []),
        ("norm1", V1.LRN, ["pool1"], ["norm1"],
         {"lrn_param": "local_size: 3 alpha: 5e-05 beta: 0.75 norm_region: WITHIN_CHANNEL"}, []),
        ("power", V1.POWER, ["norm1"], ["power"], {"power_param": "scale: 2 shift: 0.5"}, []),
        ("tanh", V1.TANH, ["power"], ["tanh"], {}, []),
        ("split", V1.SPLIT, ["tanh"], ["a", "b"], {}, []),
        ("elt", V1.ELTWISE, ["a", "b"], ["elt"], {"eltwise_param": "operation: SUM coeff: 0.5 coeff: 2"}, []),
        ("flat", V1.FLATTEN, ["elt"], ["flat"], {}, []),
        ("ip", V1.INNER_PRODUCT, ["flat"], ["ip"], {"inner_product_param": "num_output: 6"}, [(6, 64), (6,)]),
        ("sig", V1.SIGMOID, ["ip"], ["sig"], {}, []),
        ("prob", V1.SOFTMAX, ["sig"], ["prob"], {}, []),
    ]  # fmt: skip
    for name, kind, bottoms, tops, params, blob_shapes in specs:
        layer = proto.layers.add(name=name, type=kind, bottom=bottoms, top=tops)
        for field_name, text in params.items():
            text_format.Parse(text, getattr(layer, field_name))
        trained = model.layers.add()
        trained.CopyFrom(layer)
        for shape in blob_shapes:
            trained.blobs.append(array_to_blob(random_blob(rng, shape), legacy=True))
    files = NetFiles(tmp_path / "v1.prototxt", tmp_path / "v1.caffemodel")
    files.prototxt.write_text(text_format.MessageToString(proto))
    files.caffemodel.write_bytes(model.SerializeToString())
    return files


def test_v1_net_matches_opencv(tmp_path: Path) -> None:
    files = _v1_net(tmp_path)
    feeds = [{"data": np.random.default_rng(b).uniform(-2, 2, (b, 3, 9, 9)).astype(np.float32)} for b in (1, 4)]
    assert_matches_opencv(files, tmp_path, inputs=feeds)
