"""Convolution and Deconvolution against OpenCV: sizes, strides, pads, dilation, groups, bias."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.caffe_nets import NetBuilder, assert_matches_opencv, assert_matches_reference
from tests.layers import caffe_reference

# (C_in, H, W, num_output, param overrides)
CONV_CASES = [
    (3, 9, 11, {"kernel_size": [3]}),
    (3, 10, 7, {"kernel_size": [3], "stride": [2]}),  # floor rounding of an odd remainder
    (3, 9, 9, {"kernel_size": [5], "stride": [2], "pad": [2]}),
    (4, 8, 13, {"kernel_h": 3, "kernel_w": 1, "stride_h": 2, "stride_w": 1, "pad_h": 1, "pad_w": 0}),
    (3, 12, 12, {"kernel_size": [3], "dilation": [2]}),
    (3, 13, 12, {"kernel_size": [3], "dilation": [2], "pad": [2], "stride": [3]}),
    (4, 7, 7, {"kernel_size": [3], "group": 2, "pad": [1]}),
    (6, 7, 9, {"kernel_size": [3], "group": 6, "pad": [1]}),  # depthwise: group == channels
    (3, 6, 6, {"kernel_size": [1]}),  # 1x1
    (3, 5, 5, {"kernel_size": [5]}),  # kernel = whole plane
    (3, 8, 8, {"kernel_size": [3], "bias_term": False}),
    (3, 8, 9, {"kernel_size": [2, 3], "stride": [1, 2], "pad": [0, 1]}),  # per-axis repeated values
]


def _conv_net(kind: str, channels: int, height: int, width: int, overrides: dict, num_output: int = 6) -> NetBuilder:
    param = {"num_output": num_output, **overrides}
    group = param.get("group", 1)
    if "kernel_h" in param:
        kernel = (param["kernel_h"], param["kernel_w"])
    else:
        ks = param["kernel_size"]
        kernel = (ks[0], ks[-1])
    if kind == "Convolution":
        weight = (num_output, channels // group, *kernel)
    else:
        weight = (channels, num_output // group, *kernel)
    blobs = [weight] + ([(num_output,)] if param.get("bias_term", True) else [])
    net = NetBuilder(kind.lower())
    data = net.input("data", (1, channels, height, width))
    net.layer(kind, data, name="out", convolution_param=param, blobs=blobs)
    return net


@pytest.mark.parametrize(("channels", "height", "width", "overrides"), CONV_CASES)
def test_convolution(tmp_path: Path, channels: int, height: int, width: int, overrides: dict) -> None:
    net = _conv_net("Convolution", channels, height, width, overrides)
    assert_matches_opencv(net, tmp_path)


DECONV_CASES = [
    (3, 5, 7, {"kernel_size": [3]}),
    (3, 5, 6, {"kernel_size": [4], "stride": [2], "pad": [1]}),  # the usual 2x upsampler
    (4, 4, 5, {"kernel_size": [3], "stride": [3]}),
    (4, 5, 5, {"kernel_size": [3], "stride": [2], "group": 2}),
    (6, 4, 4, {"kernel_size": [2], "stride": [2], "group": 6}),  # group == channels == outputs
    (3, 4, 6, {"kernel_size": [3], "dilation": [2], "pad": [1]}),
    (3, 6, 5, {"kernel_h": 3, "kernel_w": 2, "stride_h": 2, "stride_w": 1, "pad_h": 1, "pad_w": 0}),
    (3, 5, 5, {"kernel_size": [3], "stride": [2], "bias_term": False}),
]


@pytest.mark.parametrize(("channels", "height", "width", "overrides"), DECONV_CASES)
def test_deconvolution(tmp_path: Path, channels: int, height: int, width: int, overrides: dict) -> None:
    """Against OpenCV, except with dilation: OpenCV's Deconvolution ignores ``dilation`` (its
    output is s(in-1) + k - 2p), so there deconv_layer.cpp's col2im is the authority."""
    net = _conv_net("Deconvolution", channels, height, width, overrides)
    if "dilation" not in overrides:
        assert_matches_opencv(net, tmp_path)

    def reference(feed: dict) -> dict:
        blobs = net.blobs["out"]
        pick = _per_axis(overrides)
        top = caffe_reference.deconvolution(
            feed["data"],
            blobs[0],
            blobs[1] if len(blobs) > 1 else None,
            pick("stride", 1),
            pick("pad", 0),
            pick("dilation", 1),
            overrides.get("group", 1),
        )
        return {"out": top}

    assert_matches_reference(net, tmp_path / "reference", reference)


def _per_axis(overrides: dict):
    def pick(name: str, default: int) -> tuple[int, int]:
        if f"{name}_h" in overrides:
            return overrides[f"{name}_h"], overrides[f"{name}_w"]
        values = overrides.get(name, [default])
        return values[0], values[-1]

    return pick


def test_convolution_legacy_4d_bias_blob(tmp_path: Path) -> None:
    """V1-era caffemodels store biases as 1x1x1xN and weights with num/channels/height/width."""
    net = NetBuilder("legacy")
    data = net.input("data", (1, 2, 6, 6), style="input_dim")
    param = {"num_output": 3, "kernel_size": [3]}
    net.layer("Convolution", data, name="out", convolution_param=param, blobs=[(3, 2, 3, 3), (3,)], legacy_blobs=True)
    assert_matches_opencv(net, tmp_path)
