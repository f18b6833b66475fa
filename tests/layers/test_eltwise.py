"""Eltwise SUM (with coeff), PROD, MAX over two and three bottoms."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.caffe_nets import NetBuilder, assert_matches_opencv


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize(
    "param",
    [
        {"operation": "SUM"},
        {"operation": "PROD"},
        {"operation": "MAX"},
        {"operation": "SUM", "coeff": "per-bottom"},
        {"operation": "SUM", "coeff": "subtract"},
    ],
)
@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (1, 7)])
def test_eltwise(tmp_path: Path, count: int, param: dict, shape: tuple[int, ...]) -> None:
    param = dict(param)
    if param.get("coeff") == "per-bottom":
        param["coeff"] = [0.5, -2.0, 1.5][:count]
    elif param.get("coeff") == "subtract":
        param["coeff"] = [1.0, -1.0, 1.0][:count]
    net = NetBuilder("eltwise")
    bottoms = [net.input(f"in{i}", shape) for i in range(count)]
    net.layer("Eltwise", bottoms, name="out", eltwise_param=param)
    assert_matches_opencv(net, tmp_path)


def test_eltwise_in_place_residual(tmp_path: Path) -> None:
    """A ResNet-style shortcut: conv, then Eltwise SUM written back into the conv's blob, then ReLU in place."""
    net = NetBuilder("residual")
    data = net.input("data", (1, 4, 6, 6))
    conv = net.layer(
        "Convolution",
        data,
        name="conv",
        convolution_param={"num_output": 4, "kernel_size": [3], "pad": [1]},
        blobs=[(4, 4, 3, 3), (4,)],
    )
    net.layer("Eltwise", [conv, data], conv, name="sum")
    net.layer("ReLU", conv, conv, name="relu")
    assert_matches_opencv(net, tmp_path)
