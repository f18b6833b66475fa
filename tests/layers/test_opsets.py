"""Every converter at every opset we accept: same outputs as the default opset.

Some ONNX ops changed form between opsets (ReduceMean's axes became an input in 18, Split
gained num_outputs in 18...); a net that uses every registered layer type is converted at
each opset, checked by onnx.checker (inside convert_net) and run by onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from decoder.converter import DEFAULT_OPSET, MIN_OPSET
from decoder.layers.registry import supported_types
from tests.caffe_nets import NetBuilder, assert_close, convert_files, run_onnx

OPSETS = sorted({MIN_OPSET, 15, DEFAULT_OPSET, 18, 21})


def _every_layer_net() -> NetBuilder:
    net = NetBuilder("every_layer", seed=4)
    data = net.input("data", (1, 4, 9, 9))
    gate = net.input("gate", (1, 4))
    x = net.layer(
        "Convolution",
        data,
        "conv",
        convolution_param={"num_output": 4, "kernel_size": [3], "pad": [1]},
        blobs=[(4, 4, 3, 3), (4,)],
    )
    x = net.layer(
        "Deconvolution",
        x,
        "deconv",
        convolution_param={"num_output": 4, "kernel_size": [3], "pad": [1]},
        blobs=[(4, 4, 3, 3), (4,)],
    )
    stats = [np.ones(4, np.float32), np.full(4, 2.0, np.float32), np.float32([2.0])]
    net.layer("BatchNorm", x, x, name="bn", blobs=stats)
    net.layer("BatchNorm", x, "bn_batch", name="bn_batch", blobs=stats, batch_norm_param={"use_global_stats": False})
    x = net.layer("Scale", ["bn_batch", gate], "scaled", scale_param={"axis": 0})
    x = net.layer("Bias", x, "biased", blobs=[(4,)])
    x = net.layer("PReLU", x, "prelu", blobs=[(4,)])
    x = net.layer("ELU", x, "elu")
    a, b = net.layer("Slice", x, ["a", "b"], slice_param={"axis": 1, "slice_point": [2]})
    c, d = net.layer("Split", a, ["c", "d"])
    x = net.layer("Concat", [net.layer("Sigmoid", c, "sig"), net.layer("TanH", d, "tanh"), b], "cat")
    x = net.layer("AbsVal", x, "abs")
    x = net.layer("BNLL", x, "bnll")
    x = net.layer("Power", x, "power", power_param={"power": 2, "scale": 0.5, "shift": 0.1})
    net.layer("Power", x, "ones", power_param={"power": 0})
    x = net.layer("Exp", x, "exp", exp_param={"base": 2, "scale": -0.5})
    x = net.layer("Log", x, "log", log_param={"shift": 1})
    x = net.layer("Clip", x, "clip", clip_param={"min": -1, "max": 1})
    net.layer("Threshold", x, "threshold", threshold_param={"threshold": 0.2})
    x = net.layer("LRN", x, "lrn1", lrn_param={"local_size": 3})
    x = net.layer("LRN", x, "lrn2", lrn_param={"local_size": 3, "norm_region": "WITHIN_CHANNEL"})
    x = net.layer("Eltwise", [x, "bnll"], "elt", eltwise_param={"operation": "MAX"})
    x = net.layer("Dropout", x, "drop")
    x = net.layer("ReLU", x, "relu", relu_param={"negative_slope": 0.1})
    x = net.layer("Pooling", x, "pool", pooling_param={"pool": "AVE", "kernel_size": 3, "stride": 2, "pad": 1})
    x = net.layer(
        "Crop", [x, net.layer("Pooling", x, "small", pooling_param={"pool": "MAX", "kernel_size": 2})], "crop"
    )
    x = net.layer("Permute", x, "permute", permute_param={"order": [0, 2, 3, 1]})
    x = net.layer("Reshape", x, "reshape", reshape_param={"shape": {"dim": [0, -1, 4]}})
    x = net.layer("Flatten", x, "flat")
    x = net.layer("InnerProduct", x, "ip", inner_product_param={"num_output": 6}, blobs=[(6, 96), (6,)])
    net.layer("Softmax", x, "prob")
    net.layer("ArgMax", x, "argmax", argmax_param={"top_k": 2, "out_max_val": True})
    net.layer("Silence", "ones", [])
    return net


def test_the_net_covers_every_registered_layer() -> None:
    used = {layer.type for layer in _every_layer_net().proto.layer}
    assert used == {c.caffe_type for c in supported_types()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[NetBuilder, Path, dict[str, np.ndarray]]:
    net = _every_layer_net()
    files = net.write(tmp_path_factory.mktemp("opsets"))
    model, _ = convert_files(files)
    # bn_batch (batch statistics) mixes images, so the graph keeps the declared batch of 1
    return net, files.prototxt.parent, run_onnx(model, net.random_inputs(1))


@pytest.mark.parametrize("opset", OPSETS)
def test_every_layer_at_opset(reference, opset: int) -> None:
    net, directory, expected = reference
    model, outputs = convert_files(net.write(directory / str(opset)), opset=opset)
    assert onnx.load_from_string(model).opset_import[0].version == opset
    ours = run_onnx(model, net.random_inputs(1))
    assert sorted(ours) == sorted(expected)
    for name in outputs:
        assert_close(ours[name], expected[name], f"{name} at opset {opset}")
