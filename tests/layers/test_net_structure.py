"""Whole-net structure: several inputs and outputs, in-place chains, input declarations, dynamic batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.caffe_nets import NetBuilder, assert_matches_opencv, convert_files


@pytest.mark.parametrize("style", ["input_shape", "layer"])
def test_two_inputs_three_outputs(tmp_path: Path, style: str) -> None:
    """Outputs are every blob never read again, in prototxt order, under their Caffe names."""
    net = NetBuilder("multi")
    image = net.input("image", (1, 3, 8, 8), style=style)
    extra = net.input("extra", (1, 5), style=style)
    conv = net.layer(
        "Convolution",
        image,
        name="conv",
        convolution_param={"num_output": 4, "kernel_size": [3]},
        blobs=[(4, 3, 3, 3), (4,)],
    )
    net.layer("ReLU", conv, conv, name="relu")
    net.layer("Pooling", conv, "pooled", name="pool", pooling_param={"pool": "MAX", "kernel_size": 2, "stride": 2})
    net.layer(
        "InnerProduct", "pooled", "score", name="fc", inner_product_param={"num_output": 5}, blobs=[(5, 36), (5,)]
    )
    net.layer("Eltwise", ["score", extra], "mixed", name="mix", eltwise_param={"operation": "SUM"})
    net.layer("Softmax", "mixed", "prob", name="prob")
    net.layer("Sigmoid", extra, "gate", name="gate")
    net.layer("TanH", "pooled", "side", name="side")
    files = net.write(tmp_path)
    _, outputs = convert_files(files)
    assert outputs == ["prob", "gate", "side"]
    assert_matches_opencv(files, tmp_path, inputs=[net.random_inputs(1), net.random_inputs(4)])


def test_in_place_chain_keeps_every_write(tmp_path: Path) -> None:
    """Conv -> BatchNorm -> Scale -> ReLU all writing the same blob, then a consumer."""
    import numpy as np

    net = NetBuilder("inplace")
    data = net.input("data", (1, 3, 6, 6))
    net.layer(
        "Convolution",
        data,
        "x",
        name="conv",
        convolution_param={"num_output": 4, "kernel_size": [3], "pad": [1]},
        blobs=[(4, 3, 3, 3), (4,)],
    )
    stats = [np.float32([0.1, -0.2, 0.3, 0.0]) * 5, np.float32([1.0, 2.0, 0.5, 1.5]) * 5, np.float32([5.0])]
    net.layer("BatchNorm", "x", "x", name="bn", blobs=stats)
    net.layer("Scale", "x", "x", name="scale", scale_param={"bias_term": True}, blobs=[(4,), (4,)])
    net.layer("ReLU", "x", "x", name="relu")
    net.layer("Pooling", "x", "out", name="pool", pooling_param={"pool": "AVE", "global_pooling": True})
    assert_matches_opencv(net, tmp_path)


def test_batch_can_be_fixed(tmp_path: Path) -> None:
    """convert_net(batch=...) freezes the batch; the default keeps it dynamic."""
    import onnx

    net = NetBuilder("fixed")
    data = net.input("data", (1, 2, 4, 4))
    net.layer("ReLU", data, "out", name="relu")
    files = net.write(tmp_path)
    dynamic, _ = convert_files(files)
    fixed, _ = convert_files(files, batch=2)
    first_dim = onnx.load_from_string(dynamic).graph.input[0].type.tensor_type.shape.dim[0]
    assert first_dim.dim_param and not first_dim.dim_value
    assert onnx.load_from_string(fixed).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    assert_matches_opencv(files, tmp_path, inputs=[net.random_inputs(2)], batch=2)
