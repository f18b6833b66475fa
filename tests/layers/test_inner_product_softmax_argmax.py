"""InnerProduct (axis, transpose, bias_term), Softmax (axis) and ArgMax (top_k, out_max_val, axis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.caffe_nets import NetBuilder, assert_matches_opencv, assert_matches_reference
from tests.layers import caffe_reference


@pytest.mark.parametrize(
    ("shape", "param", "k"),
    [
        ((1, 3, 4, 5), {}, 60),
        ((1, 7), {}, 7),
        ((1, 3, 4, 5), {"bias_term": False}, 60),
        ((1, 3, 4, 5), {"axis": 2}, 20),
        ((1, 3, 4, 5), {"axis": -1}, 5),
    ],
)
def test_inner_product(tmp_path: Path, shape: tuple[int, ...], param: dict, k: int) -> None:
    n = 8
    weight = (k, n) if param.get("transpose") else (n, k)
    blobs = [weight] + ([] if param.get("bias_term") is False else [(n,)])
    net = NetBuilder("ip")
    data = net.input("data", shape)
    net.layer("InnerProduct", data, name="out", inner_product_param={"num_output": n, **param}, blobs=blobs)
    assert_matches_opencv(net, tmp_path)


@pytest.mark.parametrize("bias_term", [True, False])
def test_inner_product_transpose(tmp_path: Path, bias_term: bool) -> None:
    """transpose: true stores W as [K, N] and computes x W (inner_product_layer.cpp); OpenCV 4
    ignores the flag and reads the blob as [N, K], so Caffe's rule is the authority."""
    net = NetBuilder("ip")
    data = net.input("data", (1, 3, 4, 5))
    param = {"num_output": 8, "transpose": True, "bias_term": bias_term}
    net.layer("InnerProduct", data, name="out", inner_product_param=param, blobs=[(60, 8)] + [(8,)] * bias_term)

    def reference(feed: dict) -> dict:
        blobs = net.blobs["out"]
        out = feed["data"].reshape(len(feed["data"]), -1).astype(np.float64) @ blobs[0]
        return {"out": (out + (blobs[1] if bias_term else 0)).astype(np.float32)}

    assert_matches_reference(net, tmp_path, reference)


def test_inner_product_legacy_blob_shapes(tmp_path: Path) -> None:
    """V1 caffemodels store the weight as 1x1xNxK and the bias as 1x1x1xN."""
    net = NetBuilder("ip")
    data = net.input("data", (1, 2, 3, 3), style="input_dim")
    param = {"num_output": 4}
    net.layer("InnerProduct", data, name="out", inner_product_param=param, blobs=[(4, 18), (4,)], legacy_blobs=True)
    assert_matches_opencv(net, tmp_path)


@pytest.mark.parametrize(("shape", "axis"), [((1, 10), 1), ((1, 3, 4, 5), 1), ((1, 3, 4, 5), 2), ((1, 3, 4, 5), -1)])
def test_softmax(tmp_path: Path, shape: tuple[int, ...], axis: int) -> None:
    net = NetBuilder("softmax")
    data = net.input("data", shape)
    net.layer("Softmax", data, name="out", softmax_param={"axis": axis})
    feeds = [net.random_inputs(b, seed=b, low=-20, high=20) for b in (1, 3)]
    assert_matches_opencv(net, tmp_path, inputs=feeds)


ARGMAX_CASES = [
    ((1, 10), {}),
    ((1, 10), {"top_k": 3}),
    ((1, 10), {"top_k": 3, "out_max_val": True}),
    ((1, 3, 4, 5), {}),  # flattened per instance: output (N, 1, 1, 1)
    ((1, 3, 4, 5), {"top_k": 2, "out_max_val": True}),
    ((1, 3, 4, 5), {"axis": 1}),
    ((1, 3, 4, 5), {"axis": 1, "top_k": 2}),
    ((1, 3, 4, 5), {"axis": -1, "top_k": 3, "out_max_val": True}),
    ((1, 3, 4, 5), {"axis": 2, "out_max_val": True}),
]


@pytest.mark.parametrize(("shape", "param"), ARGMAX_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_argmax(tmp_path: Path, shape: tuple[int, ...], param: dict, ties: bool) -> None:
    """OpenCV 4 has no ArgMax layer: argmax_layer.cpp is the authority, including its order
    of ties (std::greater on (value, index) pairs puts the LARGER index first)."""
    net = NetBuilder("argmax")
    data = net.input("data", shape)
    net.layer("ArgMax", data, name="out", argmax_param=param)
    axis = param.get("axis")

    def reference(feed: dict) -> dict:
        top = caffe_reference.argmax(feed["data"], param.get("top_k", 1), param.get("out_max_val", False), axis)
        return {"out": top}

    if ties:
        # Round to a few levels so that many values repeat.
        original = net.random_inputs

        def rounded(batch: int, seed: int = 1, low: float = -2.0, high: float = 2.0) -> dict:
            return {k: np.round(v) for k, v in original(batch, seed, low, high).items()}

        net.random_inputs = rounded  # type: ignore[method-assign]
    assert_matches_reference(net, tmp_path, reference)
