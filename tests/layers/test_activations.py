"""Element-wise activations and Power/Exp/Log against OpenCV (or Caffe's source where OpenCV lacks them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.caffe_nets import NetBuilder, assert_matches_opencv, assert_matches_reference

SHAPES = [(1, 3, 5, 7), (1, 4)]


def _net(type_: str, shape: tuple[int, ...] = (1, 3, 5, 7), blobs=(), in_place: bool = False, **params) -> NetBuilder:
    net = NetBuilder(type_.lower())
    data = net.input("data", shape)
    net.layer("Power", data, name="pre", power_param={"scale": 1.0})  # so in-place layers have a producer
    net.layer(type_, "pre", "pre" if in_place else "out", name="out", blobs=blobs, **params)
    return net


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("type_", "params"),
    [
        ("ReLU", {}),
        ("ReLU", {"relu_param": {"negative_slope": 0.1}}),
        ("ReLU", {"relu_param": {"negative_slope": -0.5}}),
        ("ELU", {}),
        ("ELU", {"elu_param": {"alpha": 0.3}}),
        ("Sigmoid", {}),
        ("TanH", {}),
        ("AbsVal", {}),
        ("BNLL", {}),
        ("Dropout", {"dropout_param": {"dropout_ratio": 0.3}}),
    ],
)
def test_activation(tmp_path: Path, type_: str, params: dict, shape: tuple[int, ...]) -> None:
    assert_matches_opencv(_net(type_, shape, **params), tmp_path)


@pytest.mark.parametrize("type_", ["ReLU", "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU"])
def test_activation_in_place(tmp_path: Path, type_: str) -> None:
    assert_matches_opencv(_net(type_, in_place=True), tmp_path)


def test_bnll_is_finite_for_large_inputs(tmp_path: Path) -> None:
    """Caffe's BNLL (bnll_layer.cpp) never overflows: x + log(1 + exp(-x)) for x > 0.

    In float32, log(1 + exp(-30)) rounds to 0 in Caffe (and here), not to 9.4e-14.
    """
    net = _net("BNLL", (1, 1, 1, 6))
    feed = {"data": np.float32([[[[-200.0, -30.0, 0.0, 30.0, 200.0, 1e30]]]])}
    out = assert_matches_opencv(net, tmp_path, inputs=[feed])["out"]
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 0.0, np.log(2.0), 30.0, 200.0, 1e30], rtol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("shared", [False, True])
def test_prelu(tmp_path: Path, shape: tuple[int, ...], shared: bool) -> None:
    slopes = (1,) if shared else (shape[1],)
    params = {"prelu_param": {"channel_shared": True}} if shared else {}
    assert_matches_opencv(_net("PReLU", shape, blobs=[slopes], **params), tmp_path)


@pytest.mark.parametrize("threshold", [0.0, 0.3, -1.2])
def test_threshold(tmp_path: Path, threshold: float) -> None:
    """OpenCV 4 has no Threshold layer: threshold_layer.cpp is the authority (x > t ? 1 : 0)."""
    net = _net("Threshold", threshold_param={"threshold": threshold})

    def reference(feed: dict) -> dict:
        return {"out": (feed["data"] > np.float32(threshold)).astype(np.float32)}

    assert_matches_reference(net, tmp_path, reference)


@pytest.mark.parametrize(("low", "high"), [(-0.5, 0.7), (0.0, 6.0), (1.0, 1.0)])
def test_clip(tmp_path: Path, low: float, high: float) -> None:
    """OpenCV 4 has no Clip layer: clip_layer.cpp is the authority (max(min, min(x, max)))."""
    net = _net("Clip", clip_param={"min": low, "max": high})

    def reference(feed: dict) -> dict:
        return {"out": np.maximum(np.float32(low), np.minimum(feed["data"], np.float32(high)))}

    assert_matches_reference(net, tmp_path, reference)


@pytest.mark.parametrize(
    "param",
    [
        {"power": 2.0},
        {"scale": 0.0125},
        {"shift": -1.5},
        {"power": 3.0, "scale": 0.5, "shift": 0.25},
        {"power": 0.5, "scale": 2.0, "shift": 5.0},  # positive base: no NaN
        {"power": -1.0, "shift": 3.0},
        {"power": 0.0, "scale": 3.0},  # Caffe fills 1 without reading the input
        {"power": 2.0, "scale": 0.0, "shift": 1.5},  # Caffe fills shift^power
        {},
    ],
)
def test_power(tmp_path: Path, param: dict) -> None:
    assert_matches_opencv(_net("Power", power_param=param), tmp_path)


@pytest.mark.parametrize(
    "param",
    [{}, {"base": 2.0}, {"base": 10.0, "scale": 0.5, "shift": 0.1}, {"scale": -1.0, "shift": 0.5}, {"base": 0.5}],
)
def test_exp(tmp_path: Path, param: dict) -> None:
    assert_matches_opencv(_net("Exp", exp_param=param), tmp_path)


@pytest.mark.parametrize(
    "param",
    [
        {"shift": 3.0},
        {"base": 2.0, "shift": 3.0},
        {"base": 10.0, "scale": 0.5, "shift": 1.5},
        {"scale": -2.0, "shift": 5},
    ],
)
def test_log(tmp_path: Path, param: dict) -> None:
    """log_layer.cpp: log_base(shift + scale * x). OpenCV 4's Log layer ignores base, scale
    and shift (it computes log(x)), so the Caffe formula is the authority here."""
    net = _net("Log", log_param=param)
    base = param.get("base", np.e)
    scale, shift = param.get("scale", 1.0), param.get("shift", 0.0)

    def reference(feed: dict) -> dict:
        return {"out": (np.log(shift + scale * feed["data"].astype(np.float64)) / np.log(base)).astype(np.float32)}

    assert_matches_reference(net, tmp_path, reference)


def test_log_plain(tmp_path: Path) -> None:
    """With default parameters Caffe's Log is log(x), which OpenCV does compute."""
    net = _net("Log")
    feeds = [net.random_inputs(b, seed=b, low=0.01, high=3.0) for b in (1, 3)]
    assert_matches_opencv(net, tmp_path, inputs=feeds)
