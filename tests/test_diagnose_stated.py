"""diagnose measures against the model's STATED preprocessing, and knows a guess from a statement.

The net of tests/test_diagnose_support.py ``build_rgb_model`` was fitted on RGB blobs, so its
accuracy falls when fed BGR. Its metadata is written three ways: RGB stated, BGR assumed
(the wrong guess a plain Caffe conversion makes) and BGR claimed as stated. Fed its correct
RGB blobs it must never get an error that tells the user to swap them, nor a repair that
measures worse.
"""

from __future__ import annotations

import numpy as np
import pytest

from decoder.diagnosis import diagnose
from tests.test_diagnose_support import RgbModel, accuracy, assert_no_repeated_text, rgb_model

__all__ = ["rgb_model"]  # fixture


def not_info(report) -> list[str]:
    return [f.code for f in report.findings if f.severity != "info"]


def test_the_net_needs_rgb(rgb_model: RgbModel) -> None:
    blobs = rgb_model.rgb_blobs()
    assert accuracy(rgb_model.stated, blobs, rgb_model.labels) >= 0.95
    bgr = blobs[:, ::-1] + rgb_model.mean[::-1] - rgb_model.mean  # BGR pixels minus the RGB mean
    assert accuracy(rgb_model.stated, np.ascontiguousarray(bgr), rgb_model.labels) < 0.7


def test_correct_rgb_blobs_with_rgb_metadata_pass(rgb_model: RgbModel) -> None:
    labels = [str(v) for v in rgb_model.labels]
    for report in (
        diagnose(rgb_model.stated, blobs=rgb_model.rgb_blobs()),
        diagnose(rgb_model.stated, images=list(rgb_model.images), blobs=rgb_model.rgb_blobs(), expect=labels),
    ):
        assert not_info(report) == [] and report.repair is None, report.format()


@pytest.mark.parametrize("model", ["assumed_bgr", "stated_bgr"])
def test_wrong_bgr_metadata_is_named_with_the_reconvert_command(rgb_model: RgbModel, model: str) -> None:
    labels = [str(v) for v in rgb_model.labels]
    path = getattr(rgb_model, model)
    report = diagnose(path, images=list(rgb_model.images), blobs=rgb_model.rgb_blobs(), expect=labels)
    suspect = report.finding("metadata-suspect")
    assert suspect is not None, report.format()
    assert suspect.severity == ("error" if model == "assumed_bgr" else "warning")
    assert "--channel-order RGB" in suspect.fix and "decode convert" in suspect.fix
    assert "may be wrong" in suspect.message and "channel order BGR" in suspect.message
    assert "channel-order" not in report.codes  # the user is not told to swap correct blobs
    assert_no_repeated_text(report)
    assert report.repair is None  # the blobs are already right: nothing measured better
    variants = {v.name: v.accuracy for v in report.variants}
    assert variants["swapped-channels"] >= 0.95 > 0.7 > variants["stated"]


def test_assumed_bgr_without_labels_is_not_held_against_the_user(rgb_model: RgbModel) -> None:
    # The blob alone matches the (RGB) mean it was made with: nothing to say.
    alone = diagnose(rgb_model.assumed_bgr, blobs=rgb_model.rgb_blobs())
    assert not_info(alone) == [] and alone.repair is None, alone.format()
    # With the images the swap against the stated BGR is measured, but BGR was only a guess.
    report = diagnose(rgb_model.assumed_bgr, images=list(rgb_model.images), blobs=rgb_model.rgb_blobs())
    assert report.passed, report.format()
    finding = report.finding("channel-order")
    assert finding is not None and finding.severity == "warning"
    assert "assumed at conversion" in finding.message and "--expect" in finding.message
    assert "--channel-order RGB" in finding.fix
    assert report.repair is None
    assert report.to_dict()["stated"]["channel order"].startswith("BGR (assumed")
    assert "measured against: channel order: BGR (assumed);" in report.format()


def test_a_repair_is_offered_only_when_it_measures_better(rgb_model: RgbModel) -> None:
    """The issue's case: correct blobs, wrong metadata. Then a real mistake on top: [0,1] floats."""
    labels = [str(v) for v in rgb_model.labels]
    blobs = rgb_model.rgb_blobs()
    unit = (blobs + rgb_model.mean) / 255  # RGB [0,1] floats, no mean: the user's own mistake
    report = diagnose(rgb_model.assumed_bgr, images=list(rgb_model.images), blobs=unit, expect=labels)
    assert report.repair is not None, report.format()
    fed = accuracy(rgb_model.assumed_bgr, unit, rgb_model.labels)
    assert report.repair_check["accuracy"] >= 0.95 > fed
    assert report.finding("metadata-suspect") is not None and "channel-order" not in report.codes
    fixed = report.fix(unit)
    np.testing.assert_allclose(fixed, blobs, atol=1e-3)  # RGB kept, the scale and mean repaired


@pytest.mark.shared
def test_assumed_scale_on_a_real_caffe_lenet(tmp_path) -> None:
    """Caffe's MNIST LeNet (not DIGITS) trained on pixels/256; converted without train_val the scale is a guess."""
    from decoder.conversion import convert
    from decoder.sources import open_sources
    from tests.shared_data import MODELS, mnist_test_set, require
    from tests.test_diagnose_support import with_provenance

    folder = require(MODELS / "lenet_mnist_ahmdtaha")
    with open_sources(folder) as sources:
        convert(sources, tmp_path / "plain.onnx")
    model = with_provenance(tmp_path / "plain.onnx", tmp_path / "lenet.onnx", {"scale": "assumed: 1 (no train_val)"})
    images, labels = mnist_test_set()
    report = diagnose(model, images=list(images[:60]), expect=[str(v) for v in labels[:60]])
    saturated = report.finding("saturated-softmax")
    assert saturated is not None and "--scale 0.00390625" in saturated.fix, report.format()
    assert report.passed  # its answers are right: 0..255 saturates the softmax but keeps the argmax
