"""``--expect``: which preprocessing reproduces the labels the user expected?

Each variant is DIGITS's preprocessing with ONE common mistake (FACTS.md section 5)
applied to the same images. With expected labels, each gets an accuracy; with the user's
blobs, each gets its agreement with the user's predictions, which names the mistake in
the user's pipeline even when the expected labels are unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from decoder.diagnosis.blobs import apply_layout, mean_of
from decoder.diagnosis.findings import Finding
from decoder.diagnosis.pixels import digits_blob, to_network_order
from decoder.preprocess import ImageSource, load_image
from decoder.spec import PreprocessSpec

Scorer = Callable[[np.ndarray], np.ndarray]  # blob (N, C, H, W) -> probabilities (N, K)


@dataclass(frozen=True)
class Variant:
    """One way to preprocess: a name, what it is, and the finding code it stands for."""

    name: str
    description: str
    code: str  # the finding code this mistake belongs to ("" for DIGITS itself)
    make: Callable[[np.ndarray], np.ndarray]  # network-order pixels Q -> blob


@dataclass(frozen=True)
class VariantResult:
    name: str
    description: str
    code: str
    accuracy: float | None  # vs the expected labels
    agreement_with_blobs: float | None  # vs predictions on the user's blobs
    agreement_with_digits: float

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def build_variants(spec: PreprocessSpec, images: Sequence[ImageSource]) -> list[Variant]:
    """DIGITS's preprocessing and its common mistakes that make sense for this model."""
    s = np.float32(spec.scale)

    def digits(q: np.ndarray) -> np.ndarray:
        return digits_blob(q, spec)

    out = [Variant("digits", "DIGITS: 0..255 pixels minus the training mean" + _scaled(spec), "", digits)]
    if spec.mean is not None:
        out.append(Variant("no-mean", "no mean subtracted", "mean-missing", lambda q: q * s))
    out.append(Variant("unit-range", "pycaffe load_image: [0,1] floats, no mean", "input-range", lambda q: q / 255))
    if spec.mean is not None:
        out.append(Variant("unit-range-mean", "[0,1] floats minus mean/255", "input-range", lambda q: digits(q) / 255))
    out.append(Variant("inverted", "inverted pixels (255 - pixel)", "polarity", lambda q: digits(255 - q)))
    if spec.channels == 3:
        out.append(
            Variant("swapped-channels", "RGB where BGR is expected", "channel-order", lambda q: digits(q[:, ::-1]))
        )
        out.append(
            Variant(
                "hwc-reshaped", "HWC data reshaped as CHW", "layout", lambda q: apply_layout(digits(q), "hwc-reshaped")
            )
        )
    if spec.height == spec.width:
        out.append(
            Variant("transposed", "height and width swapped", "layout", lambda q: apply_layout(digits(q), "transposed"))
        )
    if spec.mean is not None and spec.mean.ndim == 3:
        pixel = mean_of(spec, "pixel")
        out.append(Variant("pixel-mean", "mean pixel instead of mean image", "mean-wrong", lambda q: (q - pixel) * s))
    if any(_needs_resize(image, spec) for image in images):
        resized = opencv_pixels(images, spec)
        out.append(
            Variant("opencv-resize", "cv2.resize INTER_LINEAR, not PIL", "pixel-mismatch", lambda q: digits(resized))
        )
    return out


def _scaled(spec: PreprocessSpec) -> str:
    return f", times {spec.scale:g}" if spec.scale != 1.0 else ""


def _needs_resize(image: ImageSource, spec: PreprocessSpec) -> bool:
    if isinstance(image, np.ndarray):
        return tuple(image.shape[:2]) != (spec.height, spec.width)
    from PIL import Image

    try:
        with Image.open(image) as opened:  # type: ignore[arg-type]
            return opened.size != (spec.width, spec.height)
    except Exception:  # unreadable files are reported by the main preprocessing
        return False


def opencv_pixels(images: Sequence[ImageSource], spec: PreprocessSpec) -> np.ndarray:
    """The images squashed with cv2.resize INTER_LINEAR (what many hand-written pipelines do)."""
    import cv2

    out = np.empty((len(images), spec.channels, spec.height, spec.width), np.float32)
    for index, image in enumerate(images):
        pixels = np.ascontiguousarray(load_image(image, spec.channels))
        if pixels.shape[:2] != (spec.height, spec.width):
            pixels = cv2.resize(pixels, (spec.width, spec.height), interpolation=cv2.INTER_LINEAR)
        out[index] = to_network_order(pixels, spec)
    return out


def run_variants(
    variants: Sequence[Variant],
    pixels: np.ndarray,
    score: Scorer,
    expected: np.ndarray | None,
    user_predictions: np.ndarray | None,
) -> list[VariantResult]:
    """Score every variant on the same pixels."""
    results = []
    digits_predictions: np.ndarray | None = None
    for variant in variants:
        predictions = np.argmax(score(variant.make(pixels)), axis=1)
        if digits_predictions is None:
            digits_predictions = predictions
        results.append(
            VariantResult(
                variant.name,
                variant.description,
                variant.code,
                None if expected is None else float(np.mean(predictions == expected)),
                None if user_predictions is None else float(np.mean(predictions == user_predictions)),
                float(np.mean(predictions == digits_predictions)),
            )
        )
    return results


def variant_findings(results: Sequence[VariantResult], n: int) -> list[Finding]:
    """What the table says, as one ``expected-labels`` finding (plus the mistake a winning variant names).

    Two readings: which variant reproduces the expected labels, and which one reproduces
    the predictions on the user's blobs (that names the user's pipeline).
    """
    findings: list[Finding] = []
    digits = results[0]
    sentences: list[str] = []
    severity, fix = "info", ""
    if digits.accuracy is not None:
        best = max(results, key=lambda r: (r.accuracy or 0.0, r.name == "digits"))
        assert best.accuracy is not None
        if best is digits or best.accuracy <= digits.accuracy + 0.02:
            sentence = f"DIGITS's preprocessing reproduces {100 * digits.accuracy:.1f}% of the {n} expected labels"
            others = sorted((r for r in results[1:] if r.accuracy is not None), key=lambda r: -(r.accuracy or 0))
            if others:
                sentence += f" (best variant: {others[0].name}, {100 * (others[0].accuracy or 0):.1f}%)"
            if digits.accuracy < 0.5:
                severity, fix = "warning", "check the expected labels and the model: no variant explains them"
        else:
            sentence = (
                f"the expected labels are reproduced by '{best.name}' ({best.description}): "
                f"{100 * best.accuracy:.1f}% of {n}, against {100 * digits.accuracy:.1f}% for DIGITS's preprocessing "
                "of the images as they are"
            )
            severity, fix = "warning", _variant_fix(best.code)
            if best.code:
                findings.append(Finding(best.code, "error", sentence, fix, {"variant": best.name}))
        sentences.append(sentence)
    matches = [r for r in results if r.agreement_with_blobs is not None]
    if matches:
        best = max(matches, key=lambda r: (r.agreement_with_blobs or 0.0, r.name == "digits"))
        margin = (best.agreement_with_blobs or 0) - (digits.agreement_with_blobs or 0)
        if best.name != "digits" and (best.agreement_with_blobs or 0) >= 0.9 and margin >= 0.05:
            sentences.append(
                f"the predictions on your blobs match '{best.name}' ({best.description}) for "
                f"{100 * (best.agreement_with_blobs or 0):.1f}% of the inputs, DIGITS's for "
                f"{100 * (digits.agreement_with_blobs or 0):.1f}%"
            )
    if sentences:
        evidence = {"variants": [r.to_dict() for r in results]}
        message = "; ".join(sentences)
        findings.insert(0, Finding("expected-labels", severity, message[0].upper() + message[1:], fix, evidence))
    return findings


def _variant_fix(code: str) -> str:
    return {
        "polarity": "invert the images (pixel = 255 - pixel) before preprocessing",
        "channel-order": "reverse the colour channels",
        "layout": "fix the blob layout (see the layout finding)",
        "mean-missing": "the expected labels came from a pipeline without mean subtraction",
        "mean-wrong": "the expected labels came from a pipeline with another mean",
        "input-range": "the expected labels came from a pipeline with another input scale",
        "pixel-mismatch": "resize with PIL bilinear as DIGITS does (or expect OpenCV's labels)",
    }.get(code, "")
