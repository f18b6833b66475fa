"""Channel order and layout on a 3-channel model whose answers depend on them.

The colour classifier (tests/test_diagnose_support.py) tells red, green, blue and yellow
squares apart: fed RGB instead of BGR, red and blue trade places and its accuracy falls
from ~97% to ~57%, so these findings are about a real failure, not a formality.
"""

from __future__ import annotations

import numpy as np
import pytest

from decoder.diagnosis import diagnose
from decoder.runtime import Model
from tests.test_diagnose_support import ColourModel, accuracy, colour_model

__all__ = ["colour_model"]  # fixture


@pytest.fixture(scope="module")
def digits_blobs(colour_model: ColourModel) -> np.ndarray:
    """DIGITS's blob, computed independently: RGB -> BGR, HWC -> CHW, minus the mean image."""
    return colour_model.images[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) - colour_model.mean


def test_the_model_depends_on_channel_order(colour_model: ColourModel, digits_blobs: np.ndarray) -> None:
    model = Model.load(colour_model.onnx)
    np.testing.assert_array_equal(model.preprocess(list(colour_model.images)), digits_blobs)
    assert accuracy(colour_model.onnx, digits_blobs, colour_model.labels) >= 0.95
    rgb = digits_blobs[:, ::-1] + colour_model.mean - colour_model.mean[::-1]
    assert accuracy(colour_model.onnx, rgb, colour_model.labels) < 0.7


@pytest.mark.parametrize("with_images", [True, False])
def test_rgb_fed_to_a_bgr_model(colour_model: ColourModel, digits_blobs: np.ndarray, with_images: bool) -> None:
    rgb = colour_model.images.transpose(0, 3, 1, 2).astype(np.float32) - colour_model.mean  # no channel swap
    images = list(colour_model.images) if with_images else None
    report = diagnose(colour_model.onnx, images=images, blobs=rgb)
    finding = report.finding("channel-order")
    assert finding is not None, report.format()
    # With the images the swap is measured exactly; from the blob alone it is read off the mean.
    assert finding.severity == ("error" if with_images else "warning")
    assert not {"layout", "polarity", "input-range", "mean-missing"} & set(report.codes)
    fixed = report.fix(rgb)
    np.testing.assert_allclose(fixed, digits_blobs, atol=1e-3)
    assert accuracy(colour_model.onnx, fixed, colour_model.labels) >= 0.95


@pytest.mark.parametrize("with_images", [True, False])
@pytest.mark.parametrize("mean_first", [True, False])
def test_hwc_reshaped_as_chw(
    colour_model: ColourModel, digits_blobs: np.ndarray, with_images: bool, mean_first: bool
) -> None:
    bgr = colour_model.images[..., ::-1].astype(np.float32)  # (N, H, W, C)
    if mean_first:
        blobs = (bgr - colour_model.mean.transpose(1, 2, 0)).reshape(-1, 3, 24, 24)
    else:
        blobs = bgr.reshape(-1, 3, 24, 24) - colour_model.mean
    assert accuracy(colour_model.onnx, blobs, colour_model.labels) < 0.7
    report = diagnose(colour_model.onnx, images=list(colour_model.images) if with_images else None, blobs=blobs)
    assert report.codes[0] == "layout" and report.findings[0].severity == "error", report.format()
    assert "HWC" in report.findings[0].message
    fixed = report.fix(blobs)
    np.testing.assert_allclose(fixed, digits_blobs, atol=1e-3)
    scope = {"np": np, "blob": blobs, "mean": Model.load(colour_model.onnx).spec.mean}
    exec(report.repair.numpy_code(), scope)
    np.testing.assert_allclose(scope["fixed"], digits_blobs, atol=1e-3)


def test_nhwc_batch_is_a_layout_error(colour_model: ColourModel, digits_blobs: np.ndarray) -> None:
    report = diagnose(colour_model.onnx, blobs=digits_blobs.transpose(0, 2, 3, 1))
    assert report.codes[0] == "layout" and "transpose(0, 3, 1, 2)" in report.findings[0].fix


def test_healthy_colour_inputs(colour_model: ColourModel, digits_blobs: np.ndarray) -> None:
    images = list(colour_model.images)
    labels = [str(v) for v in colour_model.labels]
    for report in (
        diagnose(colour_model.onnx, images=images),
        diagnose(colour_model.onnx, blobs=digits_blobs),
        diagnose(colour_model.onnx, images=images, blobs=digits_blobs, expect=labels),
    ):
        assert [f.code for f in report.findings if f.severity != "info"] == [], report.format()
    assert report.finding("expected-labels").message.startswith("The model's preprocessing reproduces")


def test_images_of_another_size_get_a_resize_variant(colour_model: ColourModel) -> None:
    from PIL import Image

    big = [
        np.asarray(Image.fromarray(image).resize((61, 61), Image.Resampling.NEAREST)) for image in colour_model.images
    ]
    report = diagnose(colour_model.onnx, images=big, expect=list(colour_model.labels))
    names = [v.name for v in report.variants]
    assert "opencv-resize" in names and names[0] == "stated"
    assert report.variants[0].accuracy >= 0.9
