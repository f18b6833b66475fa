"""Issue 2's done criteria on the genuine DIGITS LeNet and the 10,000 MNIST test digits.

The digits are written as PNGs in DIGITS's polarity (dark digit on white: 255 - pixel),
classified by `decode DIR --model lenet.onnx --json`, and compared with the truth and with
OpenCV's independent Caffe implementation fed the DIGITS blob (pixels minus the mean
image, computed here with plain numpy).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from decoder.caffe_io import read_binaryproto
from decoder.cli.main import main
from tests.shared_data import DIGITS_LENET, mnist_test_set, require


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> str:
    archive = require(DIGITS_LENET / "digits_model.tar.gz")
    output = tmp_path_factory.mktemp("model") / "lenet.onnx"
    assert main(["convert", str(archive), "-o", str(output)]) == 0
    return str(output)


@pytest.fixture(scope="module")
def mnist_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, np.ndarray, np.ndarray]:
    images, labels = mnist_test_set()
    folder = tmp_path_factory.mktemp("mnist")
    for index, image in enumerate(images):
        Image.fromarray(255 - image).save(folder / f"{index:05d}.png", compress_level=1)
    return folder, images, labels


def test_decode_folder_reaches_digits_accuracy_and_agrees_with_opencv(
    digits_onnx: str, mnist_folder: tuple[object, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, images, labels = mnist_folder
    capsys.readouterr()
    assert main([str(folder), "--model", digits_onnx, "--json", "--top-k", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(images)
    assert [r["image"] for r in rows] == sorted(r["image"] for r in rows)
    predicted = np.array([r["index"] for r in rows])
    assert all(r["label"] == str(r["index"]) for r in rows)  # labels.txt is "0".."9"
    accuracy = float(np.mean(predicted == labels))
    assert accuracy >= 0.990, accuracy

    # OpenCV's Caffe, fed the DIGITS blob: 0..255 dark-on-white pixels minus the mean image.
    mean = read_binaryproto(DIGITS_LENET / "mean.binaryproto").reshape(1, 1, 28, 28)
    blob = (255 - images).astype(np.float32)[:, None] - mean.astype(np.uint8).astype(np.float32)
    net = cv2.dnn.readNetFromCaffe(
        str(DIGITS_LENET / "deploy.prototxt"), str(DIGITS_LENET / "snapshot_iter_21120.caffemodel")
    )
    reference = []
    for start in range(0, len(blob), 1000):
        net.setInput(blob[start : start + 1000])
        reference.append(net.forward().reshape(-1, 10).argmax(axis=1))
    agreement = float(np.mean(np.concatenate(reference) == predicted))
    assert agreement >= 0.999, agreement
    # The probabilities are the net's own softmax, not a second one: they sum to ~1 and the top
    # entries are sorted.
    for row in rows[:50]:
        probabilities = [entry["probability"] for entry in row["top_k"]]
        assert probabilities == sorted(probabilities, reverse=True)
        assert row["probability"] == probabilities[0]


def test_python_api_gives_the_same_labels_as_the_cli(digits_onnx: str, mnist_folder: tuple) -> None:
    from decoder import Model

    folder, images, labels = mnist_folder
    model = Model.load(digits_onnx)
    arrays = [255 - image for image in images[:200]]  # HxW uint8 arrays
    from_arrays = model.predict(arrays, batch_size=64)
    paths = sorted(folder.glob("*.png"))[:200]
    from_paths = model.predict(paths)
    assert [p.index for p in from_arrays] == [p.index for p in from_paths]
    assert np.mean([p.index for p in from_arrays] == labels[:200]) > 0.97
    assert from_paths[0].image == str(paths[0])
    assert len(from_paths[0].top_k) == 5
