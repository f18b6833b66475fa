"""The pieces of the diagnosis, checked against their definitions (no ../shared needed).

- the blob fit recovers every transform of the model ``U = a*D(Q) + c*M + b`` exactly,
  and the repair text computes what the repair does;
- the blob-alone inference recognises the pipelines users write;
- expected-label files, findings, the report's JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoder.diagnosis.blobs import BlobTransform, fit_with_pixels, infer_from_blob
from decoder.diagnosis.expect import class_index, expected_indices, load_expected_names
from decoder.diagnosis.findings import CODES, Finding
from decoder.diagnosis.fixes import Repair
from decoder.diagnosis.outputs import logit_spread
from decoder.diagnosis.pixels import check_pixels, digits_blob
from decoder.diagnosis.report import Report
from decoder.errors import DecoderError
from decoder.spec import PreprocessSpec

RNG = np.random.default_rng(3)
MEAN = RNG.integers(40, 220, (3, 6, 6)).astype(np.float32)
SPEC = PreprocessSpec(channels=3, height=6, width=6, mean_kind="image", mean=MEAN)
PIXELS = RNG.integers(0, 256, (5, 3, 6, 6)).astype(np.float32)


def smooth_pixels(count: int, channels: int, size: int, seed: int = 0) -> np.ndarray:
    """Whole-number pictures with real spatial structure (gradients and a bright square)."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, channels, size, size), np.float32)
    ramp = np.linspace(0, 1, size)
    for index in range(count):
        base = rng.uniform(20, 200, channels)[:, None, None] + 50 * ramp[None, :, None] * rng.uniform(-1, 1)
        picture = np.broadcast_to(base, (channels, size, size)).copy()
        top, left = rng.integers(0, size // 2, 2)
        picture[:, top : top + size // 3, left : left + size // 3] = rng.uniform(0, 255, (channels, 1, 1))
        picture[..., 0, 0], picture[..., -1, -1] = 0, 255  # the batch reaches both ends of the range
        out[index] = np.clip(np.round(picture), 0, 255)
    return out


@settings(max_examples=40, deadline=None)
@given(
    a=st.sampled_from([1.0, 1 / 255, 0.0125, -1.0, -1 / 255, 2.5]),
    mean=st.sampled_from(["none", "same", "unscaled", "pixel"]),
    b=st.sampled_from([0.0, -1.0, 7.5]),
    swapped=st.booleans(),
    layout=st.sampled_from(["chw", "hwc-reshaped", "transposed"]),
    last=st.booleans(),
)
def test_fit_recovers_any_transform(a: float, mean: str, b: float, swapped: bool, layout: str, last: bool) -> None:
    kind = {"none": "none", "same": "image", "unscaled": "image", "pixel": "pixel"}[mean]
    c = {"none": 0.0, "same": -a, "unscaled": -1.0, "pixel": -a}[mean]
    truth = BlobTransform(a, c, b, kind, swapped, layout, 0.0, "images", last and kind != "none")
    blob = truth.apply(PIXELS, SPEC)
    fitted = fit_with_pixels(blob, PIXELS, SPEC)
    assert fitted is not None and fitted.residual < 1e-4
    np.testing.assert_allclose(fitted.pixels_from(blob, SPEC), PIXELS, atol=1e-2)  # float32 blobs
    assert (fitted.swapped, fitted.layout, fitted.inverted) == (swapped, layout, a < 0)
    assert fitted.a == pytest.approx(a, rel=1e-4)
    # The repair text does what the repair does.
    repair = Repair(fitted, SPEC)
    scope = {"np": np, "blob": blob, "mean": MEAN}
    exec(repair.numpy_code(), scope)
    np.testing.assert_allclose(scope["fixed"], repair.apply(blob), atol=1e-2)
    np.testing.assert_allclose(repair.apply(blob), digits_blob(PIXELS, SPEC), atol=1e-2)


@pytest.mark.parametrize(
    ("name", "make", "scale", "mean_kind"),
    [
        ("pycaffe [0,1]", lambda q, m: q / 255, 1 / 255, "none"),
        ("DIGITS", lambda q, m: q - m, 1.0, "image"),
        ("(x - 127.5) / 127.5", lambda q, m: (q - 127.5) / 127.5, 1 / 127.5, "none"),
        ("mean on [0,1] data", lambda q, m: q / 255 - m, 1 / 255, "image"),
        ("x 255 too much", lambda q, m: (q - m) * 255, 255.0, "image"),
        ("mean pixel", lambda q, m: q - m.mean(axis=(1, 2), keepdims=True), 1.0, "pixel"),
    ],
)
def test_blob_alone_recognises_common_pipelines(name: str, make, scale: float, mean_kind: str) -> None:
    pixels = smooth_pixels(12, 3, 6)
    blob = make(pixels, MEAN).astype(np.float32)
    found = infer_from_blob(blob, SPEC)
    assert found.method == "quantized", name
    assert found.a == pytest.approx(scale) and found.mean_kind == mean_kind, (name, found)
    np.testing.assert_allclose(found.pixels_from(blob, SPEC), pixels, atol=1e-2)


def test_blob_alone_sees_hwc_data_read_as_chw() -> None:
    spec = PreprocessSpec(channels=3, height=16, width=16)
    pixels = smooth_pixels(6, 3, 16, seed=1)
    blob = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1)).reshape(6, 3, 16, 16)
    found = infer_from_blob(blob, spec)
    assert found.layout == "hwc-reshaped"
    np.testing.assert_allclose(found.pixels_from(blob, spec), pixels)
    assert infer_from_blob(pixels, spec).layout == "chw"


def test_pixel_check_polarity_and_channels() -> None:
    spec = PreprocessSpec(channels=3, height=6, width=6, mean_kind="pixel", mean=np.array([200.0, 140, 60], np.float32))
    like_training = np.broadcast_to(np.array([200.0, 140, 60])[:, None, None], (4, 3, 6, 6)) + RNG.normal(
        0, 5, (4, 3, 6, 6)
    )
    check = check_pixels(like_training, spec, check_channels=True)
    assert check is not None and not check.inverted and not check.swapped
    assert check_pixels(like_training[:, ::-1], spec, check_channels=True).swapped
    assert not check_pixels(like_training[:, ::-1], spec, check_channels=False).swapped
    inverted = check_pixels(255 - like_training, spec, check_channels=False)
    assert inverted is not None and inverted.inverted is False  # (55+115+195)/3 is too close to the mean's 133
    grey = PreprocessSpec(channels=1, height=6, width=6, mean_kind="pixel", mean=np.array([220.0], np.float32))
    assert check_pixels(np.full((3, 1, 6, 6), 30.0), grey, check_channels=False).inverted
    photos = PreprocessSpec(channels=1, height=6, width=6, mean_kind="pixel", mean=np.array([115.0], np.float32))
    assert not check_pixels(np.full((3, 1, 6, 6), 230.0), photos, check_channels=False).inverted  # just bright
    assert check_pixels(np.full((3, 1, 6, 6), 30.0), PreprocessSpec(channels=1, height=6, width=6), False) is None


def test_logit_spread() -> None:
    same = np.tile([[1.0, 2.0, 3.0]], (5, 1))
    assert logit_spread(same) == 0.0
    assert logit_spread(same + np.arange(5)[:, None]) == 0.0  # a per-input shift is invisible to softmax
    assert logit_spread(np.eye(3) * 5) > 0.5
    assert math.isnan(logit_spread(same[:1]))


def test_expected_labels_from_files_and_folders(tmp_path: Path) -> None:
    images = [tmp_path / "3" / "a.png", tmp_path / "7" / "b b.png"]
    assert load_expected_names("folders", images) == ["3", "7"]
    listing = tmp_path / "expect.txt"
    listing.write_text(f"# comment\n{images[0]} three\n\nb b.png 7\n")
    assert load_expected_names(listing, images) == ["three", "7"]
    labels = ("zero", "one", "two", "three", "four", "five", "six", "seven")
    assert list(expected_indices(["three", "7"], 2, labels)) == [3, 7]
    assert class_index("seven", labels) == 7
    with pytest.raises(DecoderError, match="neither a class number nor a label"):
        class_index("eight", labels)
    with pytest.raises(DecoderError, match="out of range"):
        class_index(9, labels)
    with pytest.raises(DecoderError, match="2 expected labels for 3 inputs"):
        expected_indices(["1", "2"], 3, labels)
    with pytest.raises(DecoderError, match="no expected label for image"):
        load_expected_names(listing, [tmp_path / "c.png"])
    with pytest.raises(DecoderError, match="no such expected-labels file"):
        load_expected_names(tmp_path / "missing.txt", images)


def test_findings_and_report() -> None:
    with pytest.raises(ValueError, match="unknown finding code"):
        Finding("made-up", "error", "x")
    with pytest.raises(ValueError, match="unknown severity"):
        Finding("layout", "fatal", "x")
    assert {"constant-output", "input-range", "mean-missing", "channel-order", "layout", "polarity"} <= set(CODES)
    report = Report(
        "m.onnx",
        [
            Finding("dead-layer", "warning", "w", evidence={"spread": float("nan")}),
            Finding("polarity", "error", "first"),
            Finding("polarity", "error", "second"),
        ],
        {"count": 3},
    )
    assert report.codes == ["polarity", "dead-layer"]  # errors first, one finding per code
    assert report.findings[0].message == "first"
    assert report.verdict == "FAILED: 1 error (polarity), 1 warning (dead-layer) in 3 inputs"
    body = json.loads(report.to_json())
    assert body["findings"][1]["evidence"]["spread"] is None  # NaN is not JSON
    with pytest.raises(ValueError, match="no repair"):
        report.fix(np.zeros((1, 1, 2, 2), np.float32))
    assert Report("m.onnx", [], {"count": 1}).verdict == "PASSED: no error in 1 input"


def test_docs_list_every_finding_code() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "diagnose.md").read_text(encoding="utf-8")
    assert [code for code in CODES if f"| `{code}` |" not in text] == []


def test_reconvert_hint_names_the_sources() -> None:
    from decoder.diagnosis.provenance import reconvert_hint, significantly_better

    archive = PreprocessSpec(channels=3, height=4, width=4, sources={"origin": "model.tar.gz"})
    assert reconvert_hint(archive, "--channel-order RGB", "/x/m.onnx").startswith(
        "`decode convert model.tar.gz -o m.onnx --channel-order RGB`"
    )
    files = PreprocessSpec(
        channels=3,
        height=4,
        width=4,
        sources={"origin": "d.prototxt", "prototxt": "d.prototxt", "caffemodel": "w.caffemodel"},
    )
    assert "--prototxt d.prototxt --weights w.caffemodel -o MODEL.onnx --scale 0.5" in reconvert_hint(
        files, "--scale 0.5"
    )
    expected = np.zeros(40, int)
    assert significantly_better(np.zeros(40, int), np.r_[np.ones(6, int), np.zeros(34, int)], expected)
    assert not significantly_better(np.zeros(40, int), np.r_[np.ones(1, int), np.zeros(39, int)], expected)


def test_unknown_provenance_is_said_per_setting() -> None:
    from decoder.diagnosis.provenance import unknown_provenance_note

    old = PreprocessSpec(channels=3, height=4, width=4, provenance={"score_output": "the net's only output"})
    assert "channel order" in unknown_provenance_note(old, ["channel_order"])
    recorded = old.with_changes(provenance={"channel_order": "assumed: Caffe's BGR"})
    assert unknown_provenance_note(recorded, ["channel_order"]) == ""
