"""Untrained weights, and scores read from the wrong blob or the wrong way.

The untrained net is what Caffe writes before the first iteration: biases at their
constant filler (0), conv weights ``xavier`` (uniform), InnerProduct weights ``gaussian``
std 0.01. Its probabilities are nearly uniform, which once passed for a double softmax,
and its mean image is MNIST-like (bright), so dark images once read as inverted: it must
get ``untrained-weights`` and neither ``double-softmax`` nor ``polarity``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from decoder.caffe_proto import caffe_pb2
from decoder.conversion import convert
from decoder.diagnosis import diagnose
from decoder.diagnosis.forward import Forward
from decoder.diagnosis.heads import check_head, looks_like_indices
from decoder.diagnosis.untrained import filler_like
from decoder.intermediates import LayerOutput, LayerRunner
from decoder.runtime import Model
from decoder.sources import open_sources
from tests.caffe_nets import NetBuilder, array_to_blob
from tests.test_diagnose_checks import pixels, small_net


def grey_net(folder: Path, *, trained: bool) -> Path:
    """1x28x28 -> conv 8x5x5 -> pool -> ip 10 -> Softmax with a bright mean image; fresh or "trained" blobs."""
    rng = np.random.default_rng(5)
    bound = np.sqrt(3 / 25)
    conv_w = rng.uniform(-bound, bound, (8, 1, 5, 5))
    ip_w = rng.normal(0, 0.01, (10, 8 * 12 * 12))
    conv_b, ip_b = np.zeros(8), np.zeros(10)
    if trained:  # what training leaves: smooth filters, heavy-tailed weights, biases moved apart
        y, x = np.mgrid[-2:3, -2:3]
        conv_w = np.stack([np.cos(k * x / 2 + y) * np.exp(-(x**2 + y**2) / 4) for k in range(8)])[:, None] * 0.3
        ip_w = rng.standard_t(3, (10, 8 * 12 * 12)) * 0.05
        conv_b, ip_b = rng.normal(0, 0.1, 8), rng.normal(0, 0.3, 10)
    net = NetBuilder("grey")
    data = net.input("data", (1, 1, 28, 28))
    conv = net.layer(
        "Convolution",
        data,
        name="conv1",
        convolution_param={"num_output": 8, "kernel_size": [5]},
        blobs=[conv_w.astype(np.float32), conv_b.astype(np.float32)],
    )
    pool = net.layer("Pooling", conv, name="pool1", pooling_param={"pool": "MAX", "kernel_size": 2, "stride": 2})
    ip = net.layer(
        "InnerProduct",
        pool,
        name="ip1",
        inner_product_param={"num_output": 10},
        blobs=[ip_w.astype(np.float32), ip_b.astype(np.float32)],
    )
    net.layer("Softmax", ip, name="prob")
    folder.mkdir(parents=True, exist_ok=True)
    files = net.write(folder, "grey")
    mean = np.full((1, 1, 28, 28), 222.0, np.float32)
    (folder / "mean.binaryproto").write_bytes(array_to_blob(mean, legacy=True).SerializeToString())
    train_val = caffe_pb2.NetParameter(name="grey")
    layer = train_val.layer.add(name="data", type="Data", top=["data", "label"])
    layer.transform_param.mean_file = "mean.binaryproto"
    (folder / "train_val.prototxt").write_text(str(train_val))
    output = folder / "grey.onnx"
    with open_sources(
        prototxt=files.prototxt,
        weights=files.caffemodel,
        mean=folder / "mean.binaryproto",
        train_val=folder / "train_val.prototxt",
    ) as sources:
        convert(sources, output)
    return output


def dark_images(count: int = 60) -> np.ndarray:
    """Bright strokes on black (raw MNIST's polarity), uint8 (N, 28, 28)."""
    rng = np.random.default_rng(2)
    images = np.zeros((count, 28, 28), np.uint8)
    for image in images:
        top, left = rng.integers(4, 16, 2)
        image[top : top + 10, left : left + 3] = 255
        image[top : top + 3, left : left + 9] = 230
    return images


@pytest.mark.parametrize("with_images", [True, False])
def test_untrained_weights_not_double_softmax_nor_polarity(tmp_path: Path, with_images: bool) -> None:
    model = grey_net(tmp_path, trained=False)
    images = dark_images()
    blobs = Model.load(model).preprocess(list(images))
    expected = [str(v) for v in np.random.default_rng(3).integers(0, 10, len(images))]
    if with_images:
        report = diagnose(model, images=list(images), blobs=blobs, expect=expected)
    else:
        report = diagnose(model, blobs=blobs)
    finding = report.finding("untrained-weights")
    assert finding is not None and finding.severity == "error", report.format()
    assert "constant" in finding.message and "conv1" in finding.message
    assert not {"double-softmax", "polarity", "constant-output"} & set(report.codes), report.format()
    assert report.repair is None


def test_trained_looking_weights_are_not_untrained(tmp_path: Path) -> None:
    model = grey_net(tmp_path, trained=True)
    report = diagnose(model, blobs=Model.load(model).preprocess(list(255 - dark_images())))
    assert "untrained-weights" not in report.codes, report.format()


def test_filler_detector() -> None:
    rng = np.random.default_rng(0)
    assert filler_like(rng.uniform(-0.1, 0.1, (20, 20, 5, 5))) == "xavier (uniform)"
    assert filler_like(rng.uniform(-0.3, 0.3, (8, 1, 5, 5))) == "xavier (uniform)"  # 200 weights
    assert filler_like(rng.normal(0, 0.01, (500, 800))) == "gaussian std 0.01"
    assert filler_like(rng.normal(0, np.sqrt(2 / 300), (500, 300))).startswith("msra")
    assert filler_like(rng.standard_t(3, (500, 800)) * 0.03) == ""  # heavy tails: trained
    y, x = np.mgrid[-2:3, -2:3]
    centres = rng.uniform(-2, 2, (20, 2))
    blobs = [np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 3) for cx, cy in centres]
    smooth = np.stack(blobs)[:, None] * rng.choice([-1.0, 1.0], (20, 1, 1, 1)) + rng.normal(0, 0.05, (20, 1, 5, 5))
    assert filler_like(smooth) == ""  # neighbouring weights correlate: trained filters


def test_caller_scores(tmp_path: Path) -> None:
    model = small_net(tmp_path)
    blobs = pixels()
    probabilities = Model.load(model).probabilities(blobs)
    assert diagnose(model, blobs=blobs, scores=probabilities).passed
    softmaxed = np.exp(probabilities) / np.exp(probabilities).sum(axis=1, keepdims=True)
    assert diagnose(model, blobs=blobs, scores=softmaxed).finding("double-softmax").severity == "error"
    indices = np.argsort(-probabilities, axis=1)[:, :3].astype(np.float32)  # ArgMax top_k: 3
    head = diagnose(model, blobs=blobs, scores=indices).finding("wrong-head")
    assert head is not None and "indices" in head.message
    relu = LayerRunner(model).run(blobs)["relu1"].reshape(len(blobs), -1)  # a hidden blob read as the scores
    wrong = diagnose(model, blobs=blobs, scores=relu).finding("wrong-head")
    assert wrong is not None and "'relu1'" in wrong.message


def test_model_head_read_from_argmax() -> None:
    scores = np.array([[3.0, 7.0, 1.0], [2.0, 0.0, 9.0]])
    forward = Forward(scores, scores / scores.sum(1, keepdims=True), scores, "top", (), float("nan"))
    layers = [LayerOutput("ip", "InnerProduct", ("ip",)), LayerOutput("top", "ArgMax", ("top",))]
    assert check_head(forward, layers, "top")[0].code == "wrong-head"
    assert "ArgMax" in check_head(forward, layers, "top")[0].message
    plain = [LayerOutput("top", "InnerProduct", ("top",))]
    assert check_head(forward, plain, "top")[0].code == "wrong-head"  # whole, distinct: indices
    assert looks_like_indices(scores) and not looks_like_indices(np.eye(3))  # one-hot is a saturated softmax
    fractional = dataclasses.replace(forward, scores=scores + 0.5)
    assert check_head(fractional, plain, "top") == []


def test_a_net_that_is_no_classifier(tmp_path: Path) -> None:
    """A score blob of one map per image: the label checks do not apply, and expected labels are refused."""
    from decoder.errors import DecoderError
    from tests.test_diagnose_checks import smooth_filters

    net = NetBuilder("maps")
    data = net.input("data", (1, 1, 8, 8))
    net.layer(
        "Convolution",
        data,
        name="conv1",
        convolution_param={"num_output": 4, "kernel_size": [3]},
        blobs=[smooth_filters(), np.array([0.1, -0.1, 0.2, 0.0], np.float32)],
    )
    files = net.write(tmp_path, "maps")
    with open_sources(prototxt=files.prototxt, weights=files.caffemodel) as sources:
        convert(sources, tmp_path / "maps.onnx")
    report = diagnose(tmp_path / "maps.onnx", blobs=pixels())
    assert any("not a classifier" in note for note in report.notes) and report.passed, report.format()
    with pytest.raises(DecoderError, match="not a classifier"):
        diagnose(tmp_path / "maps.onnx", blobs=pixels(), expect=["0"] * 16)
