"""The demo-model builder writes real Caffe/DIGITS files, and its NumPy LeNet is the net in them.

OpenCV's ``readNetFromCaffe`` is an independent Caffe implementation: if it reads our
deploy.prototxt + caffemodel and computes the same softmax as the builder's NumPy
forward pass, the writer put every weight in the right place and shape. A tiny training
budget keeps this fast; the full build lives in ``scripts/build_demo_lenet.py``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image

from decoder.caffe_proto import caffe_pb2

cv2 = pytest.importorskip("cv2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DIGITS_LENET = SHARED / "models" / "digits_lenet_mnist_eagleeye"
TRAIN_COUNT, TEST_COUNT = 640, 200


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    """scripts/ is not a package; import the script the way it imports its sibling helper."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO_ROOT / "scripts"))
        return importlib.import_module("build_demo_lenet")


@pytest.fixture(scope="module")
def built(builder: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny end-to-end build (dataset, mean, 20 SGD steps, files) shared by the tests below."""
    bank, fonts = builder.glyph_bank(builder.font_files(system=False))
    train_images, train_labels = builder.make_digits(TRAIN_COUNT, 0, bank)
    test_images, test_labels = builder.make_digits(TEST_COUNT, 1, bank)
    mean = builder.image_mean(train_images)
    solver = builder.Solver(epochs=2.0, seed=2)
    params = builder.train(train_images, train_labels, mean, solver, log=False)
    work = tmp_path_factory.mktemp("demo_lenet")
    caffemodel = builder.write_model(work, params, mean, solver, TRAIN_COUNT)
    return {
        "bank": bank,
        "fonts": fonts,
        "train": (train_images, train_labels),
        "test": (test_images, test_labels),
        "mean": mean,
        "solver": solver,
        "params": params,
        "work": work,
        "caffemodel": caffemodel,
    }


def _parse_text(path: Path) -> caffe_pb2.NetParameter:
    return text_format.Parse(path.read_text(encoding="utf-8"), caffe_pb2.NetParameter())


def test_opencv_reads_the_files_and_agrees_with_numpy(builder: ModuleType, built: dict) -> None:
    images, _ = built["test"]
    mean = built["mean"]
    net = cv2.dnn.readNetFromCaffe(str(built["work"] / "deploy.prototxt"), str(built["caffemodel"]))
    blob = (images.astype(np.float32) - mean[0].astype(np.float32))[:, np.newaxis]
    net.setInput(np.ascontiguousarray(blob))
    opencv = net.forward().reshape(len(images), 10)
    numpy_probs = builder.predict(built["params"], images, mean)

    np.testing.assert_allclose(opencv, numpy_probs, atol=1e-4, rtol=0)
    top2 = np.sort(numpy_probs, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3  # near-ties may legitimately flip between implementations
    assert clear.sum() > TEST_COUNT // 2
    assert np.array_equal(opencv.argmax(1)[clear], numpy_probs.argmax(1)[clear])


def test_caffemodel_round_trips_every_weight(builder: ModuleType, built: dict) -> None:
    stored = builder.caffe_writer.read_snapshot_weights(built["caffemodel"])
    assert set(stored) == {"conv1", "conv2", "ip1", "ip2"}
    expected_shapes = {
        "conv1": [(20, 1, 5, 5), (20,)],
        "conv2": [(50, 20, 5, 5), (50,)],
        "ip1": [(500, 800), (500,)],
        "ip2": [(10, 500), (10,)],
    }
    for name, blobs in stored.items():
        assert [b.shape for b in blobs] == expected_shapes[name]
        for got, want in zip(blobs, built["params"][name], strict=True):
            np.testing.assert_array_equal(got, want)


def test_tiny_training_lowers_the_loss(builder: ModuleType, built: dict) -> None:
    images, labels = built["train"]
    scaled = builder.scaled_input(images[:128], built["mean"])
    initial = builder.init_params(np.random.default_rng(built["solver"].seed))
    before, _ = builder.loss_and_grads(initial, scaled, labels[:128])
    after, _ = builder.loss_and_grads(built["params"], scaled, labels[:128])
    assert before > 2.0  # ten classes from random weights: about ln(10)
    assert after < 0.8 * before


def test_backprop_matches_finite_differences(builder: ModuleType) -> None:
    rng = np.random.default_rng(7)
    params = {name: [b.astype(np.float64) for b in blobs] for name, blobs in builder.init_params(rng).items()}
    for blobs in params.values():
        blobs[1][:] = rng.normal(0.0, 0.1, size=blobs[1].shape)  # non-zero biases exercise the bias paths
    scaled = rng.normal(size=(2, 28, 28, 1))
    labels = np.array([4, 9])
    _, grads = builder.loss_and_grads(params, scaled, labels)
    eps = 1e-6  # small enough not to step over a max-pool switch or ReLU kink (1e-5 does, here)
    for name, blobs in params.items():
        for which, blob in enumerate(blobs):
            for _ in range(2):
                index = tuple(int(rng.integers(s)) for s in blob.shape)
                original = blob[index]
                blob[index] = original + eps
                plus, _ = builder.loss_and_grads(params, scaled, labels)
                blob[index] = original - eps
                minus, _ = builder.loss_and_grads(params, scaled, labels)
                blob[index] = original
                numeric = (plus - minus) / (2 * eps)
                assert grads[name][which][index] == pytest.approx(numeric, abs=1e-6), (name, which, index)


def test_mean_file_is_digits_style(built: dict) -> None:
    blob = caffe_pb2.BlobProto()
    blob.ParseFromString((built["work"] / "mean.binaryproto").read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 1, 28, 28)
    assert not blob.HasField("shape")  # DIGITS writes only the legacy fields
    values = np.asarray(blob.data, dtype=np.float64).reshape(28, 28)
    train_images, _ = built["train"]
    np.testing.assert_array_equal(values, np.around(train_images.astype(np.float64).mean(axis=0)))
    assert values.min() >= 0 and values.max() <= 255
    # DIGITS polarity: white paper around a dark centre.
    assert values[0].mean() > 240 and values[10:18, 10:18].mean() < values[0].mean() - 40


def test_prototxts_and_metadata_are_digits_style(built: dict) -> None:
    work = built["work"]
    deploy = _parse_text(work / "deploy.prototxt")
    assert list(deploy.input) == ["data"] and list(deploy.input_shape[0].dim) == [1, 1, 28, 28]
    assert [(layer.name, layer.type) for layer in deploy.layer] == [
        ("scale", "Power"),
        ("conv1", "Convolution"),
        ("pool1", "Pooling"),
        ("conv2", "Convolution"),
        ("pool2", "Pooling"),
        ("ip1", "InnerProduct"),
        ("relu1", "ReLU"),
        ("ip2", "InnerProduct"),
        ("softmax", "Softmax"),
    ]
    assert deploy.layer[0].power_param.scale == pytest.approx(0.0125)

    train_val = _parse_text(work / "train_val.prototxt")
    data_layers = [layer for layer in train_val.layer if layer.type == "Data"]
    assert len(data_layers) == 2
    for layer in data_layers:
        assert layer.transform_param.mean_file == "mean.binaryproto"
        assert layer.transform_param.scale == pytest.approx(0.0125)
        assert list(layer.top) == ["scaled", "label"]
    assert "Power" not in {layer.type for layer in train_val.layer}  # the Data layer scales in training

    info = json.loads((work / "info.json").read_text(encoding="utf-8"))
    assert info["image dimensions"] == [28, 28, 1]
    assert info["image resize mode"] == "squash"
    assert info["framework"] == "caffe"
    assert (work / info["snapshot file"]) == built["caffemodel"]
    assert (work / info["mean file"]).is_file() and (work / info["labels file"]).is_file()
    assert (work / "labels.txt").read_text(encoding="utf-8").split() == [str(d) for d in range(10)]


def test_dataset_is_seeded_balanced_and_dark_on_white(builder: ModuleType, built: dict) -> None:
    bank = built["bank"]
    first, first_labels = builder.make_digits(50, 3, bank)
    again, again_labels = builder.make_digits(50, 3, bank)
    other, _ = builder.make_digits(50, 4, bank)
    assert np.array_equal(first, again) and np.array_equal(first_labels, again_labels)
    assert not np.array_equal(first, other)
    images, labels = built["train"]
    assert images.dtype == np.uint8 and images.shape == (TRAIN_COUNT, 28, 28)
    assert np.bincount(labels, minlength=10).tolist() == [TRAIN_COUNT // 10] * 10
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    assert np.median(border) == 255
    # Every digit is visibly darker than its own paper (faint, blurred pens included).
    paper = np.median(border.reshape(len(images), -1), axis=1)
    assert (images.min(axis=(1, 2)) < paper - 60).all()
    assert len(built["fonts"]) >= 1


def test_main_writes_a_complete_folder(builder: ModuleType, tmp_path: Path) -> None:
    argv = ["--work", str(tmp_path / "work"), "--samples", str(tmp_path / "samples"), "--no-convert"]
    argv += ["--train-size", "320", "--test-size", "100", "--epochs", "1"]
    assert builder.main(argv) == 0
    names = {p.name for p in (tmp_path / "work").iterdir()}
    assert {"deploy.prototxt", "train_val.prototxt", "solver.prototxt", "mean.binaryproto"} <= names
    assert {"labels.txt", "info.json", "snapshot_iter_5.caffemodel"} <= names


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "converted_models" / "samples").glob("digit_*.png")))
def test_committed_samples_are_dark_digits_on_white(path: Path) -> None:
    with Image.open(path) as image:
        assert image.mode == "L" and image.size == (28, 28)
        pixels = np.asarray(image)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    assert border.mean() > 200 and pixels.min() < 100


@pytest.mark.shared
def test_deploy_is_digits_standard_lenet(built: dict) -> None:
    """The real DIGITS export in ../shared declares exactly the net we write (compared, not copied)."""
    reference = DIGITS_LENET / "deploy.prototxt"
    if not reference.is_file():
        pytest.skip(f"{reference} not present (third-party DIGITS LeNet lives outside the repo)")
    assert _parse_text(built["work"] / "deploy.prototxt") == _parse_text(reference)
