"""Issue 4 on the genuine DIGITS LeNet and MNIST: the seed scenario, polarity, health, weights.

The seed scenario is the pycaffe way of feeding it: ``caffe.io.load_image`` gives [0,1]
floats and no mean is set, so after the net's own x0.0125 the input signal is gone and
every digit gets the same answer. The diagnosis must say so, name both causes, and offer
a repair that, applied to the very same blobs, gives DIGITS's accuracy back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from decoder.caffe_io import read_prototxt
from decoder.cli.main import main
from decoder.diagnosis import diagnose
from decoder.errors import DecoderError
from decoder.runtime import Model
from tests.shared_data import DIGITS_LENET, require
from tests.test_diagnose_support import accuracy, assert_no_repeated_text, lenet_onnx, mnist

__all__ = ["lenet_onnx", "mnist"]  # fixtures

pytestmark = pytest.mark.shared


def digits_blob(model: Path, images: np.ndarray) -> np.ndarray:
    """DIGITS's blob, computed independently: 0..255 pixels minus the mean image."""
    return images.astype(np.float32)[:, None] - Model.load(model).spec.mean


def test_seed_scenario_pycaffe_floats_without_mean(lenet_onnx: Path, mnist: tuple) -> None:
    images, labels = mnist
    blobs = images.astype(np.float32)[:, None] / 255.0  # caffe.io.load_image, no set_mean / set_raw_scale
    assert accuracy(lenet_onnx, blobs, labels) < 0.3  # the symptom: one class for everything

    report = diagnose(lenet_onnx, blobs=blobs)

    assert {"constant-output", "input-range", "mean-missing"} <= {f.code for f in report.errors}
    assert not report.passed and report.verdict.startswith("FAILED")
    constant = report.finding("constant-output")
    assert constant is not None and constant.evidence["logit_spread"] < 0.1
    scale = report.finding("input-range")
    assert scale is not None and scale.evidence["scale"] == pytest.approx(1 / 255)
    assert "set_raw_scale" in scale.fix
    fixed = report.fix(blobs)
    assert accuracy(lenet_onnx, fixed, labels) >= 0.99
    np.testing.assert_allclose(fixed, digits_blob(lenet_onnx, images), atol=1e-3)
    # The numpy text offered to the user computes the same repair.
    scope = {"np": np, "blob": blobs, "mean": Model.load(lenet_onnx).spec.mean}
    exec(report.repair.numpy_code(), scope)
    np.testing.assert_allclose(scope["fixed"], fixed, atol=1e-4)
    assert report.repair_check["distinct_labels"] == 10


def test_seed_scenario_with_the_images_and_expected_labels(lenet_onnx: Path, mnist: tuple) -> None:
    images, labels = mnist
    blobs = images.astype(np.float32)[:, None] / 255.0
    report = diagnose(lenet_onnx, images=list(images), blobs=blobs, expect=[str(v) for v in labels])
    assert {"constant-output", "input-range", "mean-missing"} <= set(report.codes)
    assert report.repair.transform.method == "images"  # fitted against DIGITS's own pixels
    assert report.repair_check["accuracy"] >= 0.99
    assert report.repair_check["max_difference_from_digits"] < 1e-3
    variants = {v.name: v for v in report.variants}
    assert variants["stated"].accuracy >= 0.99
    assert variants["unit-range"].agreement_with_blobs == 1.0  # the user's pipeline, reproduced
    assert "your blobs match 'unit-range'" in report.finding("expected-labels").message
    dead = report.finding("dead-layer")
    assert dead is not None and dead.evidence["layer"] == "conv1"
    assert "t.set_raw_scale('data', 255)" in report.finding("input-range").pycaffe  # DIGITS's way, as code


def test_raw_mnist_polarity_from_blobs_and_from_images(lenet_onnx: Path, mnist: tuple) -> None:
    images, labels = mnist
    raw = 255 - images  # MNIST as published: white digits on black
    report = diagnose(lenet_onnx, blobs=digits_blob(lenet_onnx, raw))
    assert report.codes[0] == "polarity" and report.finding("polarity").severity == "error"
    assert accuracy(lenet_onnx, report.fix(digits_blob(lenet_onnx, raw)), labels) >= 0.99
    assert "constant-output" not in report.codes  # the answers vary; they are just wrong

    with_images = diagnose(lenet_onnx, images=list(raw), expect=list(labels))
    assert with_images.finding("polarity").severity == "error"
    assert_no_repeated_text(with_images)
    variants = {v.name: v.accuracy for v in with_images.variants}
    assert variants["inverted"] >= 0.99 > 0.5 > variants["stated"]


def test_healthy_inputs_have_no_error(lenet_onnx: Path, mnist: tuple) -> None:
    images, labels = mnist
    blobs = digits_blob(lenet_onnx, images)
    for report in (
        diagnose(lenet_onnx, images=list(images)),
        diagnose(lenet_onnx, blobs=blobs),
        diagnose(lenet_onnx, images=list(images), blobs=blobs, expect=list(labels)),
    ):
        assert report.passed, report.format()
        assert [f.code for f in report.findings if f.severity != "info"] == []
        assert report.repair is None
    assert report.finding("expected-labels").evidence["variants"][0]["accuracy"] >= 0.99
    # Twenty digits of ONE class are still a working net, not a constant output.
    sevens = images[labels == 7][:20]
    assert diagnose(lenet_onnx, blobs=digits_blob(lenet_onnx, sevens)).passed


def test_mistakes_beyond_the_seed(lenet_onnx: Path, mnist: tuple) -> None:
    images, labels = mnist
    good = digits_blob(lenet_onnx, images)
    mean = Model.load(lenet_onnx).spec.mean
    cases = {
        "transposed": (good.transpose(0, 1, 3, 2), "layout"),
        "mean on the [0,1] scale": (images.astype(np.float32)[:, None] / 255 - mean, "mean-wrong"),
        "scaled up": (good * 255, "saturated-softmax"),
        "(x-127.5)/127.5": ((images.astype(np.float32)[:, None] - 127.5) / 127.5, "input-range"),
    }
    for name, (blobs, code) in cases.items():
        report = diagnose(lenet_onnx, blobs=blobs)
        assert code in report.codes, (name, report.format())
        assert accuracy(lenet_onnx, report.fix(blobs), labels) >= 0.99, name


def test_missing_weights_found_before_conversion(tmp_path: Path, lenet_onnx: Path) -> None:
    deploy = read_prototxt(require(DIGITS_LENET / "deploy.prototxt"))
    for layer in deploy.layer:
        if layer.name == "ip2":
            layer.name = "ip2_new"  # renamed in the deploy net only: Caffe keeps random weights
    renamed = tmp_path / "deploy.prototxt"
    renamed.write_text(text_format.MessageToString(deploy))
    caffemodel = DIGITS_LENET / "snapshot_iter_21120.caffemodel"

    report = diagnose(None, blobs=np.zeros((2, 1, 28, 28), np.float32), prototxt=renamed, weights=caffemodel)
    assert report.codes == ["missing-weights"]
    finding = report.findings[0]
    assert finding.evidence["layer"] == "ip2_new" and finding.evidence["candidates"] == ["ip2"]
    assert "'ip2'" in finding.fix and not report.passed

    status = main(["diagnose", "--prototxt", str(renamed), "--weights", str(caffemodel), "--json"])
    assert status == 0
    # ... and `compare` refuses to run a net it cannot convert.
    with pytest.raises(DecoderError, match="ip2_new"):
        from decoder.diagnosis.compare import compare

        compare(None, prototxt=renamed, weights=caffemodel)


def test_cli_json_and_text(tmp_path: Path, lenet_onnx: Path, mnist: tuple, capsys: pytest.CaptureFixture) -> None:
    images, labels = mnist
    from PIL import Image

    paths = []
    for index, (image, label) in enumerate(zip(images[:60], labels[:60], strict=True)):
        folder = tmp_path / "digits" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:03d}.png")
        paths.append(folder / f"{index:03d}.png")
    blobs = np.stack([np.asarray(Image.open(p), np.float32)[None] / 255 for p in sorted(paths)])
    np.save(tmp_path / "mine.npy", blobs)
    capsys.readouterr()
    argv = ["diagnose", "--model", str(lenet_onnx), str(tmp_path / "digits"), "--blobs", str(tmp_path / "mine.npy")]
    assert main([*argv, "--expect", "folders", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["passed"] is False and body["verdict"].startswith("FAILED")
    codes = [f["code"] for f in body["findings"]]
    assert {"constant-output", "input-range", "mean-missing"} <= set(codes)
    assert all({"code", "severity", "message", "fix"} <= set(f) for f in body["findings"])
    assert body["repair"]["verified"]["accuracy"] >= 0.95
    assert main([*argv, "--layers"]) == 0
    text = capsys.readouterr().out
    assert "ERROR   constant-output" in text and "Per-layer activations" in text
    assert text.rstrip().splitlines()[-1].startswith("FAILED: 3 errors")
    assert main(["diagnose", "--model", str(lenet_onnx), "--blobs", str(tmp_path / "nope.npy")]) == 2
