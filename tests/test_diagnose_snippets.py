"""The code diagnose prints is the model's own preprocessing: generated from its spec, and run here.

Every combination of channels, channel order, mean kind, scale, resize mode and crop_size
dataset size gets its numpy snippet executed on a generated image (another size than the
input, so the resize runs) and compared with :func:`decoder.preprocess.preprocess`, the
function behind ``Model.preprocess``. The pycaffe snippet is executed against a stand-in
``caffe.io.Transformer`` written from pycaffe's ``python/caffe/io.py``. The text itself
follows the spec: no mean line without a mean, no swap for RGB, a multiply only with a scale.
"""

from __future__ import annotations

import itertools
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decoder.diagnosis.snippets import numpy_snippet, pycaffe_snippet
from decoder.preprocess import caffe_resize_image, preprocess
from decoder.runtime import Model
from decoder.spec import PreprocessSpec
from tests.test_diagnose_support import ColourModel, colour_model

__all__ = ["colour_model"]  # fixture

HEIGHT, WIDTH = 12, 10


class FakeTransformer:
    """pycaffe's ``caffe.io.Transformer`` (python/caffe/io.py), the parts DIGITS and our snippets use."""

    def __init__(self, inputs: dict[str, tuple[int, ...]]) -> None:
        self.inputs = inputs
        self.transpose: dict[str, tuple[int, ...]] = {}
        self.channel_swap: dict[str, tuple[int, ...]] = {}
        self.raw_scale: dict[str, float] = {}
        self.mean: dict[str, np.ndarray] = {}
        self.input_scale: dict[str, float] = {}

    def set_transpose(self, name: str, order: tuple[int, ...]) -> None:
        self.transpose[name] = order

    def set_channel_swap(self, name: str, order: tuple[int, ...]) -> None:
        self.channel_swap[name] = order

    def set_raw_scale(self, name: str, scale: float) -> None:
        self.raw_scale[name] = scale

    def set_mean(self, name: str, mean: np.ndarray) -> None:
        mean = np.asarray(mean)
        if mean.ndim == 1:
            mean = mean[:, np.newaxis, np.newaxis]
        assert mean.shape[0] == self.inputs[name][1], "mean channels incompatible with input"
        self.mean[name] = mean

    def set_input_scale(self, name: str, scale: float) -> None:
        self.input_scale[name] = scale

    def preprocess(self, name: str, data: np.ndarray) -> np.ndarray:
        caffe_in = data.astype(np.float32, copy=False)
        in_dims = self.inputs[name][2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = caffe_resize_image(caffe_in, *in_dims)  # caffe.io.resize_image
        if name in self.transpose:
            caffe_in = caffe_in.transpose(self.transpose[name])
        if name in self.channel_swap:
            caffe_in = caffe_in[list(self.channel_swap[name]), :, :]
        if name in self.raw_scale:
            caffe_in *= self.raw_scale[name]
        if name in self.mean:
            caffe_in -= self.mean[name]
        if name in self.input_scale:
            caffe_in *= self.input_scale[name]
        return caffe_in


def fake_caffe(spec: PreprocessSpec) -> tuple[types.SimpleNamespace, types.SimpleNamespace]:
    """A ``caffe`` module with ``io.Transformer`` and a ``net`` whose input blob has the spec's shape."""
    caffe = types.SimpleNamespace(io=types.SimpleNamespace(Transformer=FakeTransformer))
    data = types.SimpleNamespace(data=np.zeros((1, spec.channels, spec.height, spec.width), np.float32))
    return caffe, types.SimpleNamespace(blobs={spec.input_name: data})


def make_spec(channels: int, order: str, mean_kind: str, scale: float, mode: str, dataset: bool) -> PreprocessSpec:
    rng = np.random.default_rng(channels + len(mode))
    mean = None
    if mean_kind == "image":
        mean = rng.uniform(0, 255, (channels, HEIGHT, WIDTH)).astype(np.float32)
    elif mean_kind == "pixel":
        mean = rng.uniform(0, 255, channels).astype(np.float32)
    sized = {"dataset_height": 16, "dataset_width": 14} if dataset else {}
    return PreprocessSpec(
        channels=channels,
        height=HEIGHT,
        width=WIDTH,
        channel_order=order,
        mean_kind=mean_kind,
        mean=mean,
        scale=scale,
        resize_mode=mode,
        seed=3,
        **sized,
    )


def picture(path: Path, size: tuple[int, int]) -> Path:
    """A colour picture with structure (gradients and a square), so a wrong crop or swap shows."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x * y) % 256], axis=2)
    rgb[height // 3 : height // 2, width // 4 : width // 2] = (250, 20, 120)
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


CASES = list(
    itertools.product(
        [1, 3], ["BGR", "RGB"], ["none", "pixel", "image"], [1.0, 0.0125], ["squash", "crop", "fill", "half_crop"]
    )
)


@pytest.mark.parametrize("dataset", [False, True])
def test_numpy_and_pycaffe_snippets_compute_the_preprocessing(tmp_path: Path, dataset: bool) -> None:
    wide, tall = picture(tmp_path / "wide.png", (31, 17)), picture(tmp_path / "tall.png", (9, 23))
    checked = 0
    for channels, order, mean_kind, scale, mode in CASES:
        if channels == 1 and order == "RGB":
            continue
        spec = make_spec(channels, order, mean_kind, scale, mode, dataset)
        for path in (wide, tall):
            expected = preprocess(str(path), spec)[np.newaxis]
            scope = {"np": np, "Image": Image, "path": str(path), "mean": spec.mean}
            exec(numpy_snippet(spec), scope)
            np.testing.assert_allclose(scope["blob"], expected, atol=1e-4, err_msg=f"numpy {spec}")
            caffe, net = fake_caffe(spec)
            scope = {"np": np, "Image": Image, "path": str(path), "mean": spec.mean, "caffe": caffe, "net": net}
            exec(pycaffe_snippet(spec), scope)
            np.testing.assert_allclose(scope["blob"], expected, atol=1e-4, err_msg=f"pycaffe {spec}")
            checked += 1
    assert checked == 2 * len([c for c in CASES if not (c[0] == 1 and c[1] == "RGB")])


def test_snippet_text_follows_the_spec() -> None:
    plain = make_spec(3, "RGB", "none", 1.0, "squash", False)
    text = numpy_snippet(plain)
    assert "mean" not in text.replace("no mean", "") and "::-1" not in text and "*=" not in text
    assert "minus the mean" not in text and "no mean, no scaling" in text
    caffe_text = pycaffe_snippet(plain)
    assert "set_channel_swap" not in caffe_text and "set_mean" not in caffe_text
    assert "set_input_scale" not in caffe_text
    full = make_spec(3, "BGR", "pixel", 0.0125, "crop", False)
    text = numpy_snippet(full)
    assert "x[:, :, ::-1]" in text and "x *= np.float32(0.0125)" in text and "img.crop(" in text
    assert "set_channel_swap('data', (2, 1, 0))" in pycaffe_snippet(full)
    assert "set_input_scale('data', 0.0125)" in pycaffe_snippet(full)
    grey = make_spec(1, "BGR", "image", 1.0, "squash", True)
    assert "convert('L')" in numpy_snippet(grey) and "caffe_resize_image" in numpy_snippet(grey)
    assert "set_channel_swap" not in pycaffe_snippet(grey)


def test_snippet_matches_model_preprocess(tmp_path: Path, colour_model: ColourModel) -> None:
    """On a converted model, the snippet's blob is the one ``Model.preprocess`` feeds."""
    model = Model.load(colour_model.onnx)
    path = picture(tmp_path / "photo.png", (40, 30))
    scope = {"np": np, "Image": Image, "path": str(path), "mean": model.spec.mean}
    exec(numpy_snippet(model.spec), scope)
    np.testing.assert_allclose(scope["blob"], model.preprocess([str(path)]), atol=1e-4)
