"""Models and inputs for the diagnosis tests (no tests here; the fixtures are imported by them).

- The genuine DIGITS LeNet from ../shared, converted once per test module, and MNIST digits
  in DIGITS's polarity (dark on white: 255 - pixel).
- A small colour classifier built here, whose predictions depend on the channel order:
  4 classes (red, green, blue, yellow square on a sky-blue background), 3x3 AVE pooling and an
  InnerProduct layer fitted by ridge regression on DIGITS-preprocessed blobs, written as
  real Caffe files (DIGITS-style folder: deploy, snapshot caffemodel, mean.binaryproto,
  labels.txt, train_val.prototxt with mean_file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from decoder.caffe_proto import caffe_pb2
from decoder.conversion import convert
from decoder.sources import open_sources
from tests.caffe_nets import NetBuilder, array_to_blob
from tests.shared_data import DIGITS_LENET, mnist_test_set, require

COLOURS = {"red": (220, 50, 40), "green": (50, 190, 60), "blue": (40, 60, 220), "yellow": (220, 210, 50)}
BACKGROUND = (90, 150, 200)  # RGB: a sky blue, so the channel averages differ
SIZE = 24


@pytest.fixture(scope="session")
def lenet_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DIGITS LeNet archive converted by `decode convert`."""
    archive = require(DIGITS_LENET / "digits_model.tar.gz")
    output = tmp_path_factory.mktemp("lenet") / "lenet.onnx"
    with open_sources(archive) as sources:
        convert(sources, output)
    return output


@pytest.fixture(scope="session")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """400 MNIST test digits in DIGITS's polarity (N, 28, 28) uint8, and their labels."""
    images, labels = mnist_test_set()
    return 255 - images[:400], labels[:400].astype(np.int64)


@dataclass(frozen=True)
class ColourModel:
    folder: Path
    onnx: Path
    mean: np.ndarray  # (3, H, W) BGR, as in mean.binaryproto
    images: np.ndarray  # (N, H, W, 3) uint8 RGB test images
    labels: np.ndarray


def render(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Squares of a class colour on a noisy sky-blue background, uint8 RGB (N, H, W, 3)."""
    labels = rng.integers(0, len(COLOURS), count)
    palette = np.array(list(COLOURS.values()), np.float64)
    images = np.empty((count, SIZE, SIZE, 3), np.uint8)
    for index, label in enumerate(labels):
        canvas = np.array(BACKGROUND, np.float64) + rng.normal(0, 12, 3)
        canvas = np.broadcast_to(canvas, (SIZE, SIZE, 3)).copy()
        side = int(rng.integers(8, 15))
        top, left = rng.integers(0, SIZE - side, 2)
        canvas[top : top + side, left : left + side] = palette[label] + rng.normal(0, 15, 3)
        canvas += rng.normal(0, 6, canvas.shape)
        images[index] = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return images, labels


def _bgr_chw(images: np.ndarray) -> np.ndarray:
    return images[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)


def build_colour_model(folder: Path) -> ColourModel:
    """Write the colour classifier as DIGITS-style Caffe files and convert it."""
    rng = np.random.default_rng(7)
    train, train_labels = render(rng, 600)
    test, test_labels = render(rng, 120)
    mean = np.round(_bgr_chw(train).mean(axis=0))  # DIGITS stores whole-number means
    pooled = (_bgr_chw(train) - mean).reshape(len(train), 3, 8, 3, 8, 3).mean(axis=(3, 5)).reshape(len(train), -1)
    design = np.hstack([pooled, np.ones((len(train), 1))]).astype(np.float64)
    targets = 8.0 * (np.eye(len(COLOURS))[train_labels] - 0.5)
    solution = np.linalg.solve(design.T @ design + 1e5 * np.eye(design.shape[1]), design.T @ targets)
    weights, bias = solution[:-1].T.astype(np.float32), solution[-1].astype(np.float32)

    net = NetBuilder("colours")
    data = net.input("data", (1, 3, SIZE, SIZE))
    pool = net.layer("Pooling", data, name="pool1", pooling_param={"pool": "AVE", "kernel_size": 3, "stride": 3})
    scores = net.layer("InnerProduct", pool, name="ip1", inner_product_param={"num_output": 4}, blobs=[weights, bias])
    net.layer("Softmax", scores, name="prob")
    folder.mkdir(parents=True, exist_ok=True)
    files = net.write(folder, "deploy")
    files.caffemodel.rename(folder / "snapshot_iter_100.caffemodel")
    blob = array_to_blob(mean[np.newaxis], legacy=True)
    (folder / "mean.binaryproto").write_bytes(blob.SerializeToString())
    (folder / "labels.txt").write_text("\n".join(COLOURS) + "\n")
    train_val = caffe_pb2.NetParameter(name="colours")
    layer = train_val.layer.add(name="data", type="Data", top=["data", "label"])
    layer.include.add(phase=caffe_pb2.TEST)
    layer.transform_param.mean_file = "mean.binaryproto"
    (folder / "train_val.prototxt").write_text(str(train_val))
    output = folder / "colours.onnx"
    with open_sources(folder) as sources:
        convert(sources, output)
    return ColourModel(folder, output, mean, test, test_labels)


@pytest.fixture(scope="session")
def colour_model(tmp_path_factory: pytest.TempPathFactory) -> ColourModel:
    return build_colour_model(tmp_path_factory.mktemp("colours") / "model")


def accuracy(onnx_path: Path, blob: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of the converted model on a preprocessed batch."""
    from decoder.runtime import Model

    return float(np.mean(Model.load(onnx_path).probabilities(blob).argmax(axis=1) == labels))


@dataclass(frozen=True)
class RgbModel:
    """A colour classifier trained on RGB blobs (as nets trained from PIL arrays are), converted twice."""

    stated: Path  # metadata says RGB, stated by an option
    assumed_bgr: Path  # metadata says BGR, assumed at conversion (the wrong guess)
    stated_bgr: Path  # metadata says BGR and claims a file stated it (still wrong)
    mean: np.ndarray  # (3, H, W) RGB, as the training blobs were
    images: np.ndarray  # (N, H, W, 3) uint8 RGB test images
    labels: np.ndarray

    def rgb_blobs(self) -> np.ndarray:
        """The correct blobs: RGB, CHW, minus the RGB mean image."""
        return self.images.transpose(0, 3, 1, 2).astype(np.float32) - self.mean


def with_provenance(source: Path, output: Path, provenance: dict[str, str]) -> Path:
    """A copy of a converted model whose metadata records ``provenance`` (where each setting came from)."""
    import onnx

    from decoder.spec import PreprocessSpec

    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    spec = PreprocessSpec.from_metadata(props)
    spec = spec.with_changes(provenance={**spec.provenance, **provenance})
    props.update(spec.to_metadata())
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(output))
    return output


def build_rgb_model(folder: Path) -> RgbModel:
    """Plain Caffe files (no DIGITS layout) of a net fitted on RGB blobs, so channel order decides its answers."""
    rng = np.random.default_rng(11)
    train, train_labels = render(rng, 600)
    test, test_labels = render(rng, 120)
    rgb = train.transpose(0, 3, 1, 2).astype(np.float32)
    mean = np.round(rgb.mean(axis=0))
    pooled = (rgb - mean).reshape(len(train), 3, 8, 3, 8, 3).mean(axis=(3, 5)).reshape(len(train), -1)
    design = np.hstack([pooled, np.ones((len(train), 1))]).astype(np.float64)
    targets = 8.0 * (np.eye(len(COLOURS))[train_labels] - 0.5)
    solution = np.linalg.solve(design.T @ design + 1e5 * np.eye(design.shape[1]), design.T @ targets)
    weights, bias = solution[:-1].T.astype(np.float32), solution[-1].astype(np.float32)

    net = NetBuilder("rgb_colours")
    data = net.input("data", (1, 3, SIZE, SIZE))
    pool = net.layer("Pooling", data, name="pool1", pooling_param={"pool": "AVE", "kernel_size": 3, "stride": 3})
    scores = net.layer("InnerProduct", pool, name="ip1", inner_product_param={"num_output": 4}, blobs=[weights, bias])
    net.layer("Softmax", scores, name="prob")
    folder.mkdir(parents=True, exist_ok=True)
    files = net.write(folder, "rgb_colours")
    (folder / "mean.binaryproto").write_bytes(array_to_blob(mean[np.newaxis], legacy=True).SerializeToString())
    (folder / "labels.txt").write_text("\n".join(COLOURS) + "\n")
    outputs = {}
    for name, order in (("rgb", "RGB"), ("bgr", "BGR")):
        outputs[name] = folder / f"{name}.onnx"
        with open_sources(
            prototxt=files.prototxt,
            weights=files.caffemodel,
            mean=folder / "mean.binaryproto",
            labels=folder / "labels.txt",
        ) as sources:
            # BGR is not given: the conversion assumes it (Caffe's order) and records the guess.
            convert(sources, outputs[name], overrides={"channel_order": "RGB"} if order == "RGB" else None)
    stated, assumed = outputs["rgb"], outputs["bgr"]
    assert "channel_order" in spec_of(assumed).assumed() and not spec_of(stated).assumed().get("channel_order")
    stated_bgr = with_provenance(outputs["bgr"], folder / "stated_bgr.onnx", {"channel_order": "train_val.prototxt"})
    return RgbModel(stated, assumed, stated_bgr, mean, test, test_labels)


@pytest.fixture(scope="session")
def rgb_model(tmp_path_factory: pytest.TempPathFactory) -> RgbModel:
    return build_rgb_model(tmp_path_factory.mktemp("rgb") / "model")


def assert_no_repeated_text(report: object) -> None:
    """No finding's message is repeated inside another's (a warning must not echo an error word for word)."""
    messages = [finding.message for finding in report.findings]  # type: ignore[attr-defined]
    for index, message in enumerate(messages):
        assert not any(message in other for other_index, other in enumerate(messages) if other_index != index), message


def spec_of(path: Path) -> Any:
    """The spec a converted model carries."""
    from decoder.runtime import Model

    return Model.load(path).spec
