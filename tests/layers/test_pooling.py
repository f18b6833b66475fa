"""Pooling: Caffe's ceil rounding, last-window clip rule, AVE edge divisor, FLOOR, global.

The sizes are chosen where the rules bite: odd planes whose last ceil-mode window hangs
over the edge, pads whose last window would start in the padding (and is dropped), pads
on one axis only (Caffe then applies the clip rule to BOTH axes), and AVE windows whose
divisor counts the pad but not the overhang beyond it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.caffe_nets import NetBuilder, assert_matches_opencv, assert_matches_reference
from tests.layers import caffe_reference

# (H, W, kernel, stride, pad): H x W input, square parameters unless given as pairs.
CASES = [
    (7, 7, 3, 2, 0),  # ceil: last window overhangs by 0 (exact fit)
    (8, 8, 3, 2, 0),  # ceil: last window overhangs by 1
    (6, 9, 2, 2, 0),  # even/odd mix, overhang on one axis only
    (7, 7, 3, 2, 1),  # pad 1: AVE divisor counts the pad
    (6, 6, 3, 2, 1),  # pad: last window would start in the pad -> clipped
    (5, 5, 2, 2, 1),  # pad: clip on a tiny plane
    (11, 13, 3, 3, 1),  # stride == kernel with pad
    (9, 10, (3, 2), (2, 1), (1, 0)),  # rectangular; pad on H only clips W too
    (10, 9, (2, 3), (1, 2), (0, 1)),  # pad on W only
    (13, 13, 5, 3, 2),  # large pad
    (1, 1, 1, 1, 0),  # degenerate 1x1
    (3, 5, 3, 1, 0),  # kernel = whole height
    (7, 5, (3, 1), (2, 3), (1, 0)),  # pad on H only: Caffe drops W's last (empty) window too
]
#: Where OpenCV departs from Caffe: pooling_layer.cpp applies the last-window clip to BOTH
#: axes as soon as either pad is non-zero (``if (pad_h_ || pad_w_)``); OpenCV clips each
#: axis by its own pad and keeps a last W window that holds no input at all.
OPENCV_DEPARTS = {(7, 5, (3, 1), (2, 3), (1, 0))}


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else value


def _pooling_param(method: str, kernel, stride, pad, round_mode: str | None = None) -> dict:
    kernel, stride, pad = _pair(kernel), _pair(stride), _pair(pad)
    param: dict = {"pool": method}
    if kernel[0] == kernel[1] and stride[0] == stride[1] and pad[0] == pad[1]:
        param.update(kernel_size=kernel[0], stride=stride[0], pad=pad[0])
    else:
        param.update(kernel_h=kernel[0], kernel_w=kernel[1], stride_h=stride[0], stride_w=stride[1])
        param.update(pad_h=pad[0], pad_w=pad[1])
    if round_mode:
        param["round_mode"] = round_mode
    return param


def _net(height: int, width: int, param: dict, channels: int = 3) -> NetBuilder:
    net = NetBuilder("pool")
    data = net.input("data", (1, channels, height, width))
    net.layer("Pooling", data, name="pool1", pooling_param=param)
    return net


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize(("height", "width", "kernel", "stride", "pad"), [c for c in CASES if c not in OPENCV_DEPARTS])
def test_pooling_matches_opencv(tmp_path: Path, method: str, height, width, kernel, stride, pad) -> None:
    net = _net(height, width, _pooling_param(method, kernel, stride, pad))
    assert_matches_opencv(net, tmp_path)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize(("height", "width", "kernel", "stride", "pad"), CASES)
def test_pooling_matches_caffe_source(tmp_path: Path, method: str, height, width, kernel, stride, pad) -> None:
    """The same cases against a transcription of pooling_layer.cpp (a second, independent judge)."""
    net = _net(height, width, _pooling_param(method, kernel, stride, pad))

    def reference(feed: dict) -> dict:
        return {"pool1": caffe_reference.pool(feed["data"], _pair(kernel), _pair(stride), _pair(pad), method)}

    assert_matches_reference(net, tmp_path, reference)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize(("height", "width", "kernel", "stride", "pad"), [c for c in CASES if c[0] > 2])
def test_round_mode_floor(tmp_path: Path, method: str, height, width, kernel, stride, pad) -> None:
    """round_mode FLOOR (BVLC Caffe, 2018): OpenCV 4's Caffe schema has no round_mode and
    rejects the layer, so the authority is pooling_layer.cpp (floor, then the same clip rule)."""
    net = _net(height, width, _pooling_param(method, kernel, stride, pad, round_mode="FLOOR"))

    def reference(feed: dict) -> dict:
        pooled = caffe_reference.pool(feed["data"], _pair(kernel), _pair(stride), _pair(pad), method, ceil_mode=False)
        return {"pool1": pooled}

    assert_matches_reference(net, tmp_path, reference)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (5, 7), (6, 6)])
def test_global_pooling(tmp_path: Path, method: str, height: int, width: int) -> None:
    net = _net(height, width, {"pool": method, "global_pooling": True}, channels=4)
    assert_matches_opencv(net, tmp_path)


def test_ave_divisor_differs_from_onnx_count_include_pad(tmp_path: Path) -> None:
    """The case ONNX's own flags get wrong: a ceil-mode window overhanging a padded edge.

    6x6 plane, kernel 3, stride 2, pad 1: 4 windows per axis, starting at -1, 1, 3, 5. On
    an all-ones input Caffe divides the first by 3 (pad counted: 2/3), the last by 2 (the
    window is clipped at in + pad = 7, not at the kernel: 1/2), which neither ONNX's
    count_include_pad=0 (1/1) nor =1 (1/3) reproduces.
    """
    net = _net(6, 6, _pooling_param("AVE", 3, 2, 1), channels=1)
    ones = {"data": np.ones((1, 1, 6, 6), np.float32)}
    out = assert_matches_opencv(net, tmp_path, inputs=[ones])["pool1"][0, 0]
    expected_rows = np.array([2 / 3, 1.0, 1.0, 1 / 2])
    np.testing.assert_allclose(out, np.outer(expected_rows, expected_rows), rtol=1e-6)


def test_window_outside_the_input_is_refused(tmp_path: Path) -> None:
    """Stride > kernel without pad: Caffe's last window would hold no input at all."""
    from decoder.caffe_io import load_net
    from decoder.converter import convert_net
    from decoder.errors import DecoderError

    files = _net(5, 5, _pooling_param("MAX", 1, 3, 0)).write(tmp_path)
    with pytest.raises(DecoderError, match="outside the input"):
        convert_net(load_net(files.prototxt, files.caffemodel))
