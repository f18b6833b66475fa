"""`decode compare`: layer by layer against OpenCV's Caffe, another .onnx, or another input.

The converted DIGITS LeNet must agree with OpenCV's import of the original files at every
layer; with one weight of conv2 changed in the .onnx, conv2 must be named as the first
diverging layer, the layers before it must agree exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from decoder.cli.main import main
from decoder.diagnosis.compare import compare
from decoder.errors import DecoderError
from tests.shared_data import DIGITS_LENET, require
from tests.test_diagnose_support import ColourModel, colour_model, lenet_onnx, mnist

__all__ = ["colour_model", "lenet_onnx", "mnist"]  # fixtures

LENET_LAYERS = ["scale", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "softmax"]


@pytest.fixture(scope="module")
def corrupted(lenet_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LeNet .onnx with one conv2 weight changed by 0.5."""
    model = onnx.load(str(lenet_onnx))
    for tensor in model.graph.initializer:
        if tensor.name == "conv2/weight":
            weights = numpy_helper.to_array(tensor).copy()
            weights[3, 7, 2, 2] += 0.5
            tensor.CopyFrom(numpy_helper.from_array(weights, tensor.name))
            break
    else:
        pytest.fail("no conv2/weight initializer in the converted LeNet")
    path = tmp_path_factory.mktemp("corrupt") / "corrupt.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.shared
def test_converted_lenet_matches_opencv_at_every_layer(mnist: tuple) -> None:
    archive = require(DIGITS_LENET / "digits_model.tar.gz")
    images, _ = mnist
    result = compare(archive, images=list(images[:32]))  # Caffe sources: converted, then checked against themselves
    assert result.passed, result.format()
    assert [layer.name for layer in result.layers] == LENET_LAYERS
    assert max(layer.relative for layer in result.layers) < 1e-5
    assert result.prediction_agreement == 1.0 and result.inputs == 32
    assert result.reference.startswith("OpenCV 4.")


@pytest.mark.shared
def test_corrupted_weight_diverges_at_that_layer(corrupted: Path, lenet_onnx: Path) -> None:
    archive = require(DIGITS_LENET / "digits_model.tar.gz")
    for result in (compare(corrupted, caffe=archive), compare(corrupted, against=lenet_onnx)):
        first = result.first_divergence
        assert first is not None and first.name == "conv2", result.format()
        assert [layer.max_abs for layer in result.layers[:3]] == [0.0, 0.0, 0.0]  # scale, conv1, pool1 untouched
        assert first.relative > 1e-2
        assert result.verdict.startswith("FAILED: first divergence at layer 'conv2' (Convolution)")
    explicit = compare(
        corrupted, prototxt=DIGITS_LENET / "deploy.prototxt", weights=DIGITS_LENET / "snapshot_iter_21120.caffemodel"
    )
    assert explicit.first_divergence.name == "conv2"


@pytest.mark.shared
def test_two_preprocessings_through_one_model(lenet_onnx: Path, mnist: tuple) -> None:
    images, _ = mnist
    from decoder.runtime import Model

    good = Model.load(lenet_onnx).preprocess(list(images[:64]))
    pycaffe = images[:64].astype(np.float32)[:, None] / 255
    result = compare(lenet_onnx, blobs=good, against_blobs=pycaffe)
    assert result.first_divergence.name == "scale"  # they differ from the very first layer
    assert result.prediction_agreement < 0.5
    assert compare(lenet_onnx, blobs=good, against_blobs=good.copy()).passed


@pytest.mark.shared
def test_cli(corrupted: Path, capsys: pytest.CaptureFixture) -> None:
    archive = require(DIGITS_LENET / "digits_model.tar.gz")
    capsys.readouterr()
    assert main(["compare", "--model", str(corrupted), "--caffe", str(archive), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["first_divergence"] == "conv2" and body["passed"] is False
    assert [row["name"] for row in body["layers"]] == LENET_LAYERS
    assert main(["compare", "--model", str(archive)]) == 0
    text = capsys.readouterr().out
    assert text.rstrip().splitlines()[-1].startswith("PASSED: 9 layers agree")
    assert main(["compare", "--model", str(corrupted)]) == 2  # no reference named
    assert "name a reference" in capsys.readouterr().err


def test_colour_model_against_opencv(colour_model: ColourModel) -> None:
    result = compare(colour_model.folder, images=list(colour_model.images[:8]))
    assert result.passed, result.format()
    assert [layer.name for layer in result.layers] == ["pool1", "ip1", "prob"]


def test_shape_mismatch_between_blobs_is_refused(colour_model: ColourModel) -> None:
    blob = np.zeros((2, 3, 24, 24), np.float32)
    with pytest.raises(DecoderError, match="second blob has shape"):
        compare(colour_model.onnx, blobs=blob, against_blobs=blob[:1])
