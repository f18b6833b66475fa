"""Every third-party model in ../shared/models converts and computes what OpenCV's Caffe computes.

Inputs are the models' own sample images where they have some, prepared roughly as their
authors fed them (the point here is the network, so both engines get the very same blob;
exact DIGITS preprocessing is tested elsewhere); otherwise seeded random inputs of the
declared shape. Every output of every net is compared, at batch 1 and at batch > 1.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decoder.caffe_io import NetInput, load_net, read_binaryproto
from decoder.converter import convert_net
from tests.caffe_nets import NetFiles, assert_close, run_onnx, run_opencv
from tests.shared_data import MODELS, require

pytestmark = pytest.mark.shared

MTCNN = MODELS / "mtcnn_kpzhang"
LENET_V2 = MODELS / "lenet_mnist_ahmdtaha"
LENET_V1 = MODELS / "lenet_mnist_v1_everpeace"
DIGITS = MODELS / "digits_lenet_mnist_eagleeye"
CIFAR = MODELS / "cifar10full_lrn_v1_everpeace"


def _compare(
    prototxt: Path, caffemodel: Path, feeds: list[np.ndarray], input_shape: tuple[int, ...] | None = None
) -> dict[str, np.ndarray]:
    """Convert (optionally re-declaring the input shape) and compare every output on every feed."""
    files = NetFiles(require(prototxt), require(caffemodel))
    net = load_net(files.prototxt, files.caffemodel)
    if input_shape is not None:
        net = dataclasses.replace(net, inputs=[NetInput(net.inputs[0].name, input_shape)])
    graph = convert_net(net)
    model = graph.model.SerializeToString()
    name = net.inputs[0].name
    ours: dict[str, np.ndarray] = {}
    for feed in feeds:
        ours = run_onnx(model, {name: feed})
        reference = run_opencv(files, {name: feed}, graph.outputs)
        for output in graph.outputs:
            assert_close(ours[output], reference[output], f"{prototxt.name} {output!r} at input {feed.shape}")
    return ours


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(require(path)).convert("RGB"), dtype=np.float32)


def _mtcnn_patches(size: tuple[int, int], count: int, channels: int = 3) -> np.ndarray:
    """Crops of the sample photos as MTCNN feeds them: RGB, (x - 127.5) / 128, H and W swapped.

    ``size`` is the (H, W) of the blob, i.e. after the swap.
    """
    rng = np.random.default_rng(size[0] * 1000 + size[1])
    images = [_rgb(MTCNN / "samples" / name) for name in ("test1.jpg", "test2.jpg")]
    patches = []
    for index in range(count):
        image = images[index % 2]
        planes = []
        for _ in range(channels // 3):
            top = rng.integers(0, image.shape[0] - 60)
            left = rng.integers(0, image.shape[1] - 60)
            side = int(rng.integers(30, 60))
            crop = Image.fromarray(image[top : top + side, left : left + side].astype(np.uint8))
            resized = np.asarray(crop.resize((size[0], size[1]), Image.BILINEAR), dtype=np.float32)
            planes.append(((resized - 127.5) * 0.0078125).transpose(2, 1, 0))  # CHW with W, H swapped
        patches.append(np.concatenate(planes))
    return np.stack(patches).astype(np.float32)


@pytest.mark.parametrize(("net", "size"), [("det1", (12, 12)), ("det2", (24, 24)), ("det3", (48, 48))])
def test_mtcnn(net: str, size: tuple[int, int]) -> None:
    """P-, R-, O-Net: every output (face probability, box regression, landmarks)."""
    batch = _mtcnn_patches(size, 5)
    ours = _compare(MTCNN / f"{net}.prototxt", MTCNN / f"{net}.caffemodel", [batch[:1], batch])
    assert len(ours) == (3 if net == "det3" else 2)


def test_mtcnn_det1_at_another_size() -> None:
    """P-Net is fully convolutional: MTCNN runs it on whole image pyramids, not 12x12."""
    shape = (1, 3, 37, 53)
    patches = _mtcnn_patches((37, 53), 2)
    assert patches.shape[1:] == shape[1:]
    ours = _compare(MTCNN / "det1.prototxt", MTCNN / "det1.caffemodel", [patches[:1], patches], input_shape=shape)
    assert ours["prob1"].shape == (2, 2, 14, 22)


def test_mtcnn_det4() -> None:
    """L-Net: Slice of 15 channels into five 3-channel patches, five branches, Concat, five outputs."""
    batch = _mtcnn_patches((24, 24), 3, channels=15)
    ours = _compare(MTCNN / "det4.prototxt", MTCNN / "det4.caffemodel", [batch[:1], batch])
    assert len(ours) == 5


def _mnist_samples() -> np.ndarray:
    paths = sorted(require(LENET_V2 / "samples").glob("*.png"))
    return np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float32) for p in paths])[:, None]


def test_lenet_v2_input_layer() -> None:
    """Stock Caffe LeNet (Input layer, V2), fed pixel / 256 as in its training recipe."""
    digits = _mnist_samples() * 0.00390625
    ours = _compare(LENET_V2 / "mnist_deploy.prototxt", LENET_V2 / "lenet_iter_10000.caffemodel", [digits[:1], digits])
    labels = [int(p.name.split("_")[1]) for p in sorted((LENET_V2 / "samples").glob("*.png"))]
    assert list(ours["loss"].reshape(len(digits), -1).argmax(axis=1)) == labels


def test_lenet_v1_legacy_files() -> None:
    """2014 LeNet: V1 prototxt (input_dim 64), V1 caffemodel with 4-D legacy blob shapes."""
    digits = _mnist_samples() * 0.00390625
    _compare(LENET_V1 / "lenet.prototxt", LENET_V1 / "lenet_iter_10000.caffemodel", [digits[:1], digits])


def test_digits_lenet() -> None:
    """The genuine DIGITS LeNet (Power scale layer), fed its samples minus its mean image."""
    mean = read_binaryproto(require(DIGITS / "mean.binaryproto")).reshape(1, 1, 28, 28)
    samples = [Image.open(require(DIGITS / "samples" / n)) for n in ("mnist_complete_zero.png", "test2.jpg")]
    gray = np.stack([np.asarray(s.convert("L").resize((28, 28)), dtype=np.float32) for s in samples])[:, None]
    digits = gray - mean
    _compare(DIGITS / "deploy.prototxt", DIGITS / "snapshot_iter_21120.caffemodel", [digits[:1], digits])


def test_cifar10_full_lrn_within_channel() -> None:
    """CIFAR-10 full (V1 files): LRN WITHIN_CHANNEL and AVE pooling with Caffe's rounding."""
    images = [_rgb(MTCNN / "samples" / name) for name in ("test1.jpg", "test2.jpg")]
    blobs = []
    for image in images:
        small = np.asarray(Image.fromarray(image.astype(np.uint8)).resize((32, 32), Image.BILINEAR), np.float32)
        blobs.append(small[:, :, ::-1].transpose(2, 0, 1) - 120.0)  # BGR, roughly mean-centred
    rng = np.random.default_rng(0)
    blobs.append(rng.uniform(-128, 128, (3, 32, 32)).astype(np.float32))
    batch = np.stack(blobs)
    _compare(CIFAR / "cifar10_full.prototxt", CIFAR / "cifar10_full_iter_70000.caffemodel", [batch[:1], batch])
