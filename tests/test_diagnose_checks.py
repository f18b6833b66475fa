"""Output and layer checks on small Caffe nets broken on purpose (written with our own schema).

A net whose convolution weights hold a NaN, whose ReLU sees only negative values, or that
ends in two Softmax layers: each must be named, at the right layer, with the right code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from decoder.conversion import convert
from decoder.diagnosis import diagnose
from decoder.sources import open_sources
from tests.caffe_nets import NetBuilder


def smooth_filters() -> np.ndarray:
    """Four 3x3 filters with the structure training gives (two edges, a spot, a diagonal), not filler noise."""
    ramp, bump = np.array([-1.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0])
    spot = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float64)
    diagonal = np.array([[2, 1, 0], [1, 0, -1], [0, -1, -2]], np.float64)
    filters = np.stack([np.outer(bump, ramp), np.outer(ramp, bump), spot, diagonal]) / 4
    return (0.05 * filters[:, np.newaxis]).astype(np.float32)


def small_net(
    tmp_path: Path,
    *,
    conv_weights: np.ndarray | None = None,
    conv_bias: float | np.ndarray = (0.01, -0.02, 0.03, 0.0),
    softmaxes: int = 1,
):
    """input 1x1x8x8 -> conv 4x3x3 -> ReLU -> ip 5 -> Softmax (xN), converted to .onnx."""
    net = NetBuilder("small", seed=0)
    data = net.input("data", (1, 1, 8, 8))
    weights = conv_weights if conv_weights is not None else smooth_filters()
    conv = net.layer(
        "Convolution",
        data,
        name="conv1",
        convolution_param={"num_output": 4, "kernel_size": [3]},
        blobs=[weights, np.broadcast_to(np.asarray(conv_bias, np.float32), (4,)).copy()],
    )
    relu = net.layer("ReLU", conv, name="relu1")
    top = net.layer("InnerProduct", relu, name="ip1", inner_product_param={"num_output": 5}, blobs=[(5, 144), (5,)])
    for index in range(softmaxes):
        top = net.layer("Softmax", top, name=f"prob{index + 1}")
    files = net.write(tmp_path, "small")
    output = tmp_path / "small.onnx"
    with open_sources(prototxt=files.prototxt, weights=files.caffemodel) as sources:
        convert(sources, output)
    return output


def pixels(count: int = 16) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (count, 1, 8, 8)).astype(np.float32)


def test_a_working_small_net_is_healthy(tmp_path: Path) -> None:
    report = diagnose(small_net(tmp_path), blobs=pixels())
    assert report.passed and not [f for f in report.findings if f.severity != "info"], report.format()
    assert [s.name for s in report.layers] == ["conv1", "relu1", "ip1", "prob1"]
    assert all(s.spread > 0.05 for s in report.layers)


def test_nan_weight_is_a_dead_layer_at_that_layer(tmp_path: Path) -> None:
    weights = np.random.default_rng(0).normal(0, 0.05, (4, 1, 3, 3)).astype(np.float32)
    weights[2, 0, 1, 1] = np.nan
    report = diagnose(small_net(tmp_path, conv_weights=weights), blobs=pixels())
    dead = report.finding("dead-layer")
    assert dead is not None and dead.severity == "error" and dead.evidence["layer"] == "conv1"
    assert "NaN" in dead.message


def test_relu_that_never_fires_is_a_dead_layer(tmp_path: Path) -> None:
    report = diagnose(small_net(tmp_path, conv_bias=-1e4), blobs=pixels())
    dead = report.finding("dead-layer")
    assert dead is not None and dead.severity == "error" and dead.evidence["layer"] == "relu1"
    assert "only zeros" in dead.message
    assert "constant-output" in report.codes  # and so every input gets the same scores


def test_two_softmaxes_in_a_row(tmp_path: Path) -> None:
    report = diagnose(small_net(tmp_path, softmaxes=2), blobs=pixels())
    finding = report.finding("double-softmax")
    assert finding is not None and finding.severity == "error"
    assert report.layers[-1].max <= np.e / (4 + np.e) + 1e-6  # squashed toward uniform: at most e/(K-1+e)
