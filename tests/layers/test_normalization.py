"""BatchNorm (BVLC, NVIDIA 0.15 and 0.16 layouts), Scale and Bias, LRN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.caffe_nets import NetBuilder, assert_matches_opencv, assert_matches_reference
from tests.layers import caffe_reference

C = 4
RNG = np.random.default_rng(7)
MEAN = RNG.uniform(-1, 1, C).astype(np.float32)
VAR = RNG.uniform(0.2, 2, C).astype(np.float32)
GAMMA = RNG.uniform(0.5, 1.5, C).astype(np.float32)
BETA = RNG.uniform(-1, 1, C).astype(np.float32)


def _bn_net(blobs: list[np.ndarray], shape=(1, C, 5, 6), **param) -> NetBuilder:
    net = NetBuilder("bn")
    data = net.input("data", shape)
    net.layer("BatchNorm", data, name="out", blobs=blobs, batch_norm_param=param)
    return net


@pytest.mark.parametrize("factor", [1.0, 999.0, 0.0])
@pytest.mark.parametrize("shape", [(1, C, 5, 6), (1, C)])
def test_batch_norm_bvlc(tmp_path: Path, factor: float, shape) -> None:
    """BVLC blobs [mean*s, var*s, s]: statistics are blob / s, and 0 when s == 0."""
    blobs = [MEAN * factor, VAR * factor, np.float32([factor])]
    assert_matches_opencv(_bn_net(blobs, shape, eps=1e-3), tmp_path)


def test_batch_norm_default_eps_and_in_place(tmp_path: Path) -> None:
    net = NetBuilder("bn")
    data = net.input("data", (1, C, 3, 3))
    conv = net.layer(
        "Convolution",
        data,
        name="conv",
        convolution_param={"num_output": C, "kernel_size": [1]},
        blobs=[(C, C, 1, 1), (C,)],
    )
    net.layer("BatchNorm", conv, conv, name="bn", blobs=[MEAN * 3, VAR * 3, np.float32([3])])
    net.layer("Scale", conv, conv, name="scale", scale_param={"bias_term": True}, blobs=[GAMMA, BETA])
    assert_matches_opencv(net, tmp_path)


def test_batch_norm_batch_statistics(tmp_path: Path) -> None:
    """use_global_stats: false in a deploy net: Caffe (batch_norm_layer.cpp) normalises with
    the batch's own mean and biased variance, plus eps. OpenCV only does this at batch 1 and
    is ~1e-4 away from that formula, so the Caffe source is the authority here."""
    blobs = [MEAN, VAR, np.float32([1.0])]
    net = _bn_net(blobs, use_global_stats=False, eps=1e-4)

    def reference(feed: dict) -> dict:
        return {"out": caffe_reference.batch_norm(feed["data"], None, None, 1e-4)}

    assert_matches_reference(net, tmp_path / "reference", reference, batches=(1, 3))


def test_batch_norm_nvidia_015(tmp_path: Path) -> None:
    """NVIDIA Caffe 0.15 (branch caffe-0.15, batch_norm_layer.cpp): [scale, bias, mean, var, iter],
    y = (x - mean) / sqrt(var + eps) * scale + bias. OpenCV reads only BVLC's layout."""
    blobs = [GAMMA, BETA, MEAN, VAR, np.float32([500.0])]
    net = _bn_net(blobs, eps=1e-5)

    def reference(feed: dict) -> dict:
        return {"out": caffe_reference.batch_norm(feed["data"], MEAN, VAR, 1e-5, GAMMA, BETA)}

    assert_matches_reference(net, tmp_path, reference, caffe_flavor="NVIDIA")
    assert_matches_reference(net, tmp_path / "no_flavor", reference)


@pytest.mark.parametrize("eps", [1e-3, 1e-9])
def test_batch_norm_nvidia_016_scale_bias(tmp_path: Path, eps: float) -> None:
    """NVIDIA Caffe 0.16/0.17: [mean, var, correction, scale, bias] with scale_bias; the
    statistics are used as stored and eps is raised to at least 1e-5 (batch_norm_layer.cpp)."""
    blobs = [MEAN, VAR, np.float32([1.0]), GAMMA, BETA]
    net = _bn_net(blobs, eps=eps, scale_bias=True)

    def reference(feed: dict) -> dict:
        return {"out": caffe_reference.batch_norm(feed["data"], MEAN, VAR, max(eps, 1e-5), GAMMA, BETA)}

    assert_matches_reference(net, tmp_path, reference, caffe_flavor="NVIDIA")


def test_batch_norm_nvidia_016_three_blobs(tmp_path: Path) -> None:
    """NVIDIA 0.16 without scale_bias: [mean, var, 1]; with the NVIDIA flavour eps is raised to 1e-5."""
    blobs = [MEAN, VAR, np.float32([1.0])]
    net = _bn_net(blobs, eps=1e-8)

    def reference_nvidia(feed: dict) -> dict:
        return {"out": caffe_reference.batch_norm(feed["data"], MEAN, VAR, 1e-5)}

    def reference_bvlc(feed: dict) -> dict:
        return {"out": caffe_reference.batch_norm(feed["data"], MEAN, VAR, 1e-8)}

    assert_matches_reference(net, tmp_path, reference_nvidia, caffe_flavor="NVIDIA")
    assert_matches_reference(net, tmp_path / "bvlc", reference_bvlc, caffe_flavor="BVLC")


def test_batch_norm_nvidia_flavour_keeps_bvlc_scale_factor(tmp_path: Path) -> None:
    """A factor s != 1 is only ever written by BVLC-style code (also NVIDIA <= 0.14): divide by it."""
    blobs = [MEAN * 7, VAR * 7, np.float32([7.0])]
    assert_matches_opencv(_bn_net(blobs, eps=1e-3), tmp_path, caffe_flavor="NVIDIA")


def _scale_net(shape, blob_shapes, *, two_bottoms=None, layer="Scale", **param) -> NetBuilder:
    net = NetBuilder(layer.lower())
    data = net.input("data", shape)
    bottoms = [data]
    if two_bottoms is not None:
        bottoms.append(net.input("factor", two_bottoms))
    field = "scale_param" if layer == "Scale" else "bias_param"
    net.layer(layer, bottoms, name="out", blobs=blob_shapes, **{field: param})
    return net


SCALE_CASES = [
    ((1, 3, 4, 5), [(3,)], {}),
    ((1, 3, 4, 5), [(3,), (3,)], {"bias_term": True}),
    ((1, 3, 4, 5), [(3, 4)], {"num_axes": 2}),
    ((1, 3, 4, 5), [(4, 5)], {"axis": 2, "num_axes": -1}),
    ((1, 3, 4, 5), [(1,)], {"num_axes": 0}),  # one scalar factor
    ((1, 6), [(6,), (6,)], {"bias_term": True}),
]


@pytest.mark.parametrize(("shape", "blobs", "param"), SCALE_CASES)
def test_scale(tmp_path: Path, shape, blobs, param) -> None:
    assert_matches_opencv(_scale_net(shape, blobs, **param), tmp_path)


def test_scale_negative_axis(tmp_path: Path) -> None:
    """axis -1 counts from the end (scale_layer.cpp, CanonicalAxisIndex); OpenCV 4 fails an
    internal assertion on it, so the Caffe formula is the authority."""
    net = _scale_net((1, 3, 4, 5), [(5,)], axis=-1)
    assert_matches_reference(net, tmp_path, lambda feed: {"out": feed["data"] * net.blobs["out"][0]})


@pytest.mark.parametrize(
    ("shape", "factor_shape", "blobs", "param"),
    [
        ((1, 3, 4, 5), (1, 3), [], {"axis": 0}),  # per-instance, per-channel factor
        ((1, 3, 4, 5), (1, 3, 4, 5), [], {"axis": 0}),  # element-wise product
    ],
)
def test_scale_two_bottoms(tmp_path: Path, shape, factor_shape, blobs, param) -> None:
    """The factor comes from a second bottom (scale_layer.cpp, as in SENet); it broadcasts from ``axis``."""
    net = _scale_net(shape, blobs, two_bottoms=factor_shape, **param)

    def reference(feed: dict) -> dict:
        return {"out": feed["data"] * feed["factor"].reshape(feed["factor"].shape + (1,) * (len(shape) - 2))}

    assert_matches_opencv(net, tmp_path)
    if len(factor_shape) == 2:
        assert_matches_reference(net, tmp_path / "reference", reference)


def test_scale_learned_bias_over_batch_keeps_the_declared_batch(tmp_path: Path) -> None:
    """With axis 0 the learned bias has the declared batch (1) in its shape: it applies to
    each call of one image, so the net keeps batch 1 and every image gets that bias."""
    from decoder.caffe_io import load_net
    from decoder.converter import convert_net

    net = _scale_net((1, 3, 4, 5), [(1, 3)], two_bottoms=(1, 3), axis=0, bias_term=True)
    bias = net.blobs["out"][0].reshape(1, 3, 1, 1)

    def reference(feed: dict) -> dict:
        return {"out": feed["data"] * feed["factor"][:, :, None, None] + bias}

    assert_matches_reference(net, tmp_path, reference, batches=(1, 3))
    files = net.write(tmp_path / "fixed")
    assert convert_net(load_net(files.prototxt, files.caffemodel)).fixed_batch == 1


@pytest.mark.parametrize(
    ("shape", "blob", "param"),
    [
        ((1, 3, 4, 5), (3,), {}),
        ((1, 3, 4, 5), (4, 5), {"axis": 2, "num_axes": 2}),
        ((1, 3, 4, 5), (1,), {"num_axes": 0}),
    ],
)
def test_bias(tmp_path: Path, shape, blob, param) -> None:
    """OpenCV 4 has no Bias layer: bias_layer.cpp (add, broadcast from ``axis``) is the authority."""
    net = _scale_net(shape, [blob], layer="Bias", **param)
    start = param.get("axis", 1)

    def reference(feed: dict) -> dict:
        bias = net.blobs["out"][0]
        trailing = (1,) * (len(shape) - start - (0 if param.get("num_axes", 1) == 0 else bias.ndim))
        return {"out": feed["data"] + bias.reshape(bias.shape + trailing)}

    assert_matches_reference(net, tmp_path, reference)


def test_bias_two_bottoms(tmp_path: Path) -> None:
    net = _scale_net((1, 3, 4, 5), [], two_bottoms=(1, 3), layer="Bias", axis=0)

    def reference(feed: dict) -> dict:
        return {"out": feed["data"] + feed["factor"][:, :, None, None]}

    assert_matches_reference(net, tmp_path, reference)


@pytest.mark.parametrize("size", [1, 3, 5])
@pytest.mark.parametrize(("alpha", "beta", "k"), [(1e-4, 0.75, 1.0), (0.5, 0.6, 1.0), (0.5, 0.6, 2.0)])
def test_lrn_across_channels(tmp_path: Path, size: int, alpha: float, beta: float, k: float) -> None:
    """x * (k + alpha/n * sum of x^2 over n channels)^-beta (lrn_layer.cpp). OpenCV departs
    from it when k != 1, so there the formula is the only authority."""
    net = NetBuilder("lrn")
    data = net.input("data", (1, 6, 5, 7))
    net.layer("LRN", data, name="out", lrn_param={"local_size": size, "alpha": alpha, "beta": beta, "k": k})
    if k == 1.0:
        assert_matches_opencv(net, tmp_path)

    def reference(feed: dict) -> dict:
        x = feed["data"].astype(np.float64)
        pad = (size - 1) // 2
        padded = np.pad(x**2, ((0, 0), (pad, pad), (0, 0), (0, 0)))
        window = sum(padded[:, i : i + x.shape[1]] for i in range(size))
        return {"out": (x * (k + alpha / size * window) ** -beta).astype(np.float32)}

    assert_matches_reference(net, tmp_path / "reference", reference)


@pytest.mark.parametrize(("height", "width"), [(5, 7), (1, 1), (2, 9)])
@pytest.mark.parametrize(("size", "alpha", "beta"), [(3, 5e-5, 0.75), (3, 0.9, 0.75), (5, 0.5, 1.3), (1, 0.3, 0.5)])
def test_lrn_within_channel(tmp_path: Path, size: int, alpha: float, beta: float, height: int, width: int) -> None:
    """x * (1 + alpha * mean_{n x n, zero-padded}(x^2))^-beta, against OpenCV and the formula."""
    net = NetBuilder("lrn")
    data = net.input("data", (1, 3, height, width))
    param = {"local_size": size, "alpha": alpha, "beta": beta, "norm_region": "WITHIN_CHANNEL"}
    net.layer("LRN", data, name="out", lrn_param=param)
    assert_matches_opencv(net, tmp_path)

    def reference(feed: dict) -> dict:
        x = feed["data"].astype(np.float64)
        pad = (size - 1) // 2
        padded = np.pad(x**2, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        window = sum(padded[:, :, i : i + height, j : j + width] for i in range(size) for j in range(size)) / (
            size * size
        )
        return {"out": (x * (1 + alpha * window) ** -beta).astype(np.float32)}

    assert_matches_reference(net, tmp_path / "reference", reference)


def test_lrn_within_channel_ignores_k(tmp_path: Path) -> None:
    """lrn_layer.cpp builds WITHIN_CHANNEL's power layer with shift 1, whatever ``k`` says."""
    from tests.caffe_nets import convert_files, run_onnx

    outputs = []
    for k in (1.0, 3.0):
        net = NetBuilder("lrn")
        data = net.input("data", (1, 2, 4, 4))
        param = {"local_size": 3, "alpha": 0.5, "beta": 0.75, "k": k, "norm_region": "WITHIN_CHANNEL"}
        net.layer("LRN", data, name="out", lrn_param=param)
        model, _ = convert_files(net.write(tmp_path / str(k)))
        outputs.append(run_onnx(model, net.random_inputs(2))["out"])
    np.testing.assert_array_equal(outputs[0], outputs[1])
