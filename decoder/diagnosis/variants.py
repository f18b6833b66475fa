"""``--expect``: which preprocessing reproduces the labels the user expected?

Each variant is the model's stated preprocessing (its metadata; DIGITS's pipeline for a
DIGITS model) with ONE common mistake (FACTS.md section 5) applied to the same images.
With expected labels, each gets an accuracy; with the user's blobs, each gets its
agreement with the user's predictions, which names the mistake in the user's pipeline
even when the expected labels are unknown.

A variant that changes a setting the metadata holds (channel order, mean, scale) and
reproduces the expected labels significantly better than the stated preprocessing says
the metadata may be wrong: the images were fed exactly as the metadata says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from decoder.diagnosis.blobs import apply_layout, mean_of
from decoder.diagnosis.findings import Finding
from decoder.diagnosis.pixels import digits_blob, to_network_order
from decoder.diagnosis.provenance import is_assumed, reconvert_hint, significantly_better, source_phrase
from decoder.preprocess import ImageSource, load_image
from decoder.spec import PreprocessSpec

Scorer = Callable[[np.ndarray], np.ndarray]  # blob (N, C, H, W) -> probabilities (N, K)


@dataclass(frozen=True)
class Variant:
    """One way to preprocess: a name, what it is, and the finding code it stands for.

    ``settings`` maps the metadata settings the variant changes ("channel_order", "mean",
    "scale") to the `decode convert` / `decode attach` options that would make it the
    model's preprocessing.
    """

    name: str
    description: str
    code: str  # the finding code this mistake belongs to ("" for the stated preprocessing itself)
    make: Callable[[np.ndarray], np.ndarray]  # network-order pixels Q -> blob
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VariantResult:
    name: str
    description: str
    code: str
    accuracy: float | None  # vs the expected labels
    agreement_with_blobs: float | None  # vs predictions on the user's blobs
    agreement_with_digits: float
    predictions: np.ndarray | None = field(default=None, repr=False, compare=False)
    settings: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "code": self.code,
            "accuracy": self.accuracy,
            "agreement_with_blobs": self.agreement_with_blobs,
            "agreement_with_digits": self.agreement_with_digits,
        }


def build_variants(spec: PreprocessSpec, images: Sequence[ImageSource]) -> list[Variant]:
    """The stated preprocessing and its common mistakes that make sense for this model."""
    s = np.float32(spec.scale)
    unit = _number(spec.scale / 255)

    def stated(q: np.ndarray) -> np.ndarray:
        return digits_blob(q, spec)

    mean_text = {"image": "minus the mean image", "pixel": "minus the mean pixel", "none": ", no mean"}[spec.mean_kind]
    mean_text = mean_text if spec.mean_kind == "none" else " " + mean_text
    out = [Variant("stated", f"as the metadata states: 0..255 pixels{mean_text}{_scaled(spec)}", "", stated)]
    if spec.mean is not None:
        out.append(
            Variant("no-mean", "no mean subtracted", "mean-missing", lambda q: q * s, {"mean": "--mean-kind none"})
        )
    unit_settings = {"scale": "--scale 0.00392157"} | ({"mean": "--mean-kind none"} if spec.mean is not None else {})
    out.append(
        Variant(
            "unit-range", "pycaffe load_image: [0,1] floats, no mean", "input-range", lambda q: q / 255, unit_settings
        )
    )
    if spec.mean is not None:
        out.append(
            Variant(
                "unit-range-mean",
                "[0,1] floats minus mean/255",
                "input-range",
                lambda q: stated(q) / 255,
                {"scale": f"--scale {unit}"},
            )
        )
    out.append(Variant("inverted", "inverted pixels (255 - pixel)", "polarity", lambda q: stated(255 - q)))
    if spec.channels == 3:
        order = spec.channel_order
        other = "RGB" if order == "BGR" else "BGR"
        out.append(
            Variant(
                "swapped-channels",
                f"{other} where the metadata says {order}",
                "channel-order",
                lambda q: stated(q[:, ::-1]),
                {"channel_order": f"--channel-order {other}"},
            )
        )
        out.append(
            Variant(
                "hwc-reshaped", "HWC data reshaped as CHW", "layout", lambda q: apply_layout(stated(q), "hwc-reshaped")
            )
        )
    if spec.height == spec.width:
        out.append(
            Variant("transposed", "height and width swapped", "layout", lambda q: apply_layout(stated(q), "transposed"))
        )
    if spec.mean is not None and spec.mean.ndim == 3:
        pixel = mean_of(spec, "pixel")
        out.append(
            Variant(
                "pixel-mean",
                "mean pixel instead of mean image",
                "mean-wrong",
                lambda q: (q - pixel) * s,
                {"mean": "--mean-kind pixel"},
            )
        )
    if any(_needs_resize(image, spec) for image in images):
        resized = opencv_pixels(images, spec)
        out.append(
            Variant("opencv-resize", "cv2.resize INTER_LINEAR, not PIL", "pixel-mismatch", lambda q: stated(resized))
        )
    return out


def _number(value: float) -> str:
    return f"{value:.6g}"


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
    stated_predictions: np.ndarray | None = None
    for variant in variants:
        predictions = np.argmax(score(variant.make(pixels)), axis=1)
        if stated_predictions is None:
            stated_predictions = predictions
        results.append(
            VariantResult(
                variant.name,
                variant.description,
                variant.code,
                None if expected is None else float(np.mean(predictions == expected)),
                None if user_predictions is None else float(np.mean(predictions == user_predictions)),
                float(np.mean(predictions == stated_predictions)),
                predictions,
                dict(variant.settings),
            )
        )
    return results


def variant_findings(
    results: Sequence[VariantResult], n: int, spec: PreprocessSpec, expected: np.ndarray | None, model: str = ""
) -> list[Finding]:
    """What the table says, as one ``expected-labels`` finding (plus the mistake a winning variant names).

    Two readings: which variant reproduces the expected labels (only a significant win
    counts, see :func:`~decoder.diagnosis.provenance.significantly_better`), and which one
    reproduces the predictions on the user's blobs (that names the user's pipeline). A
    winner that changes a metadata setting makes a ``metadata-suspect`` finding; the
    others the finding of their mistake. The summary never repeats the finding's words.
    """
    findings: list[Finding] = []
    stated = results[0]
    sentences: list[str] = []
    severity, fix = "info", ""
    if stated.accuracy is not None and expected is not None and stated.predictions is not None:
        winners = [
            r
            for r in results[1:]
            if r.predictions is not None and significantly_better(r.predictions, stated.predictions, expected)
        ]
        if not winners:
            sentence = f"the model's preprocessing reproduces {100 * stated.accuracy:.1f}% of the {n} expected labels"
            others = sorted((r for r in results[1:] if r.accuracy is not None), key=lambda r: -(r.accuracy or 0))
            if others:
                sentence += f" (best variant: {others[0].name}, {100 * (others[0].accuracy or 0):.1f}%)"
            if stated.accuracy < 0.5:
                severity, fix = "warning", "check the expected labels and the model: no variant explains them"
        else:
            best = max(winners, key=lambda r: (r.accuracy or 0.0, -len(r.settings)))
            assert best.accuracy is not None
            winning = (
                f"'{best.name}' ({best.description}) reproduces {100 * best.accuracy:.1f}% of the {n} expected labels, "
                f"the model's preprocessing {100 * stated.accuracy:.1f}%"
            )
            if best.settings:
                findings.append(_metadata_finding(best, spec, winning, model))
            elif best.code:
                findings.append(Finding(best.code, "error", winning, _variant_fix(best.code), {"variant": best.name}))
            code = "metadata-suspect" if best.settings else best.code
            sentence = f"best variant on the expected labels: {best.name}" + (f" (see {code})" if code else "")
            severity = "info" if code else "warning"
        sentences.append(sentence)
    matches = [r for r in results if r.agreement_with_blobs is not None]
    if matches:
        best = max(matches, key=lambda r: (r.agreement_with_blobs or 0.0, r.name == "stated"))
        margin = (best.agreement_with_blobs or 0) - (stated.agreement_with_blobs or 0)
        if best.name != "stated" and (best.agreement_with_blobs or 0) >= 0.9 and margin >= 0.05:
            sentences.append(
                f"the predictions on your blobs match '{best.name}' ({best.description}) for "
                f"{100 * (best.agreement_with_blobs or 0):.1f}% of the inputs, the stated preprocessing for "
                f"{100 * (stated.agreement_with_blobs or 0):.1f}%"
            )
    if sentences:
        evidence = {"variants": [r.to_dict() for r in results]}
        message = "; ".join(sentences)
        findings.insert(0, Finding("expected-labels", severity, message[0].upper() + message[1:], fix, evidence))
    return findings


def _metadata_finding(best: VariantResult, spec: PreprocessSpec, winning: str, model: str) -> Finding:
    """``metadata-suspect``: the images, fed another way than the metadata says, match the labels better."""
    assumed = [setting for setting in best.settings if is_assumed(spec, setting)]
    stated = "; ".join(f"{describe_setting(spec, setting)}{source_phrase(spec, setting)}" for setting in best.settings)
    message = f"the model's metadata may be wrong: it says {stated}, but {winning}"
    options = " ".join(best.settings.values())
    fix = f"if the model was trained that way, rewrite its metadata: {reconvert_hint(spec, options, model)}"
    evidence = {"variant": best.name, "settings": dict(best.settings), "assumed": assumed}
    return Finding("metadata-suspect", "error" if assumed else "warning", message, fix, evidence)


def describe_setting(spec: PreprocessSpec, setting: str) -> str:
    """The metadata's value of a setting, in words ("channel order BGR", "mean pixel 104, 117, 123")."""
    if setting == "channel_order":
        return f"channel order {spec.channel_order}"
    if setting == "scale":
        return f"scale {spec.scale:g}"
    if spec.mean_kind == "pixel" and spec.mean is not None:
        return "mean pixel " + ", ".join(f"{v:g}" for v in spec.mean)
    return {"image": "the mean image", "none": "no mean"}.get(spec.mean_kind, spec.mean_kind)


def _variant_fix(code: str) -> str:
    return {
        "polarity": "invert the images (pixel = 255 - pixel) before preprocessing",
        "layout": "fix the blob layout (see the layout finding)",
        "pixel-mismatch": "resize with PIL bilinear as DIGITS does (or expect OpenCV's labels)",
    }.get(code, "")
