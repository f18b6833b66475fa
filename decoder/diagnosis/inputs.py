"""Findings about the input blob: its shape, and each mistake the fitted transform reveals.

A :class:`~decoder.diagnosis.blobs.BlobTransform` says how the user's blob relates to the
model's pixels; here it is compared with the preprocessing the model's metadata states
(``a = scale``, its mean subtracted at pixel scale, its channel order, CHW; for a DIGITS
model that is DIGITS's pipeline) and every difference becomes one finding with the
figures that show it. Whether the difference is the user's mistake or the metadata's is
decided later, by measurement (:mod:`decoder.diagnosis.run`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from decoder.diagnosis.blobs import CLOSE_FIT, EXACT_FIT, BlobTransform, mean_of
from decoder.diagnosis.findings import Finding
from decoder.diagnosis.pixels import PixelCheck
from decoder.diagnosis.provenance import source_phrase
from decoder.errors import DecoderError
from decoder.spec import PreprocessSpec

#: Relative error on the scale or the mean tolerated before calling it wrong.
TOLERANCE = 0.05


def check_shape(blob: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray | None, list[Finding]]:
    """The blob as (N, C, H, W) when it can be read so, and a finding when it had to be reread."""
    expected = (spec.channels, spec.height, spec.width)
    if blob.ndim == 3 and tuple(blob.shape) == expected:
        return blob[np.newaxis], []
    if blob.ndim == 3 and spec.channels == 1 and tuple(blob.shape[1:]) == expected[1:]:
        return blob[:, np.newaxis], []
    if blob.ndim == 4 and tuple(blob.shape[1:]) == expected:
        return blob, []
    if blob.ndim == 4 and tuple(blob.shape[1:]) == (spec.height, spec.width, spec.channels):
        message = (
            f"the blob has shape {list(blob.shape)}: (N, H, W, C) where the network takes (N, C, H, W) = "
            f"(N, {', '.join(map(str, expected))}); it was not transposed"
        )
        fix = "transpose it: blob.transpose(0, 3, 1, 2) (pycaffe: transformer.set_transpose('data', (2, 0, 1)))"
        return blob.transpose(0, 3, 1, 2), [Finding("layout", "error", message, fix, {"shape": list(blob.shape)})]
    message = f"the blob has shape {list(blob.shape)}; the network takes (N, {', '.join(map(str, expected))})"
    fix = f"make a float32 batch of shape (N, {', '.join(map(str, expected))})"
    return None, [Finding("input-shape", "error", message, fix, {"shape": list(blob.shape)})]


def require_finite(blob: np.ndarray, origin: str) -> None:
    if not np.all(np.isfinite(blob)):
        raise DecoderError(f"the blob holds {int(np.sum(~np.isfinite(blob)))} NaN/Inf values", origin)


def describe_range(blob: np.ndarray) -> str:
    return f"{float(blob.min()):.4g}..{float(blob.max()):.4g} (mean {float(blob.mean()):.4g})"


def transform_findings(
    t: BlobTransform, spec: PreprocessSpec, blob: np.ndarray, reference: np.ndarray | None, first_layer: str
) -> list[Finding]:
    """Every way ``t`` departs from the model's stated preprocessing, as findings (most telling first)."""
    hedges = {"images": "", "quantized": " (inferred from the blob alone)"}
    hedge = hedges.get(t.method, " (a guess from the value range)")
    findings: list[Finding] = []
    if t.layout == "hwc-reshaped":
        message = (
            f"the blob is HWC data reshaped to (C, H, W){hedge}: each row of a channel holds interleaved pixels "
            "of all channels, so the picture is scrambled"
        )
        fix = "transpose, do not reshape: x = img.transpose(2, 0, 1) (pycaffe: set_transpose('data', (2, 0, 1)))"
        findings.append(Finding("layout", "error", message, fix, {"layout": t.layout}))
    elif t.layout == "transposed":
        message = f"the blob's height and width are swapped{hedge} (the images are transposed)"
        fix = "feed rows first: x = x.transpose(0, 1, 3, 2) on your (N, C, W, H) batch"
        findings.append(Finding("layout", "error", message, fix, {"layout": t.layout}))
    if t.swapped:
        order = spec.channel_order
        wrong = "RGB" if order == "BGR" else "BGR"
        message = (
            f"the blob's channels are in {wrong} order{hedge}; the model's metadata says {order}"
            f"{source_phrase(spec, 'channel_order')}"
        )
        fix = "reverse the channel axis: x = x[::-1] for (C, H, W), or pycaffe set_channel_swap('data', (2, 1, 0))"
        findings.append(Finding("channel-order", "error", message, fix, {"fed": wrong, "expected": order}))
    if t.inverted:
        message = f"the blob is inverted{hedge}: it holds 255 - pixel where the network expects the pixel"
        fix = "do not invert the images (remove the 255 - x / ImageOps.invert step)"
        findings.append(Finding("polarity", "error", message, fix, {"source": "blob transform"}))
    findings.extend(_scale_findings(t, spec, blob, reference, first_layer, hedge))
    findings.extend(_mean_findings(t, spec, hedge))
    if t.method == "range":  # the blob is not made of whole pixel values: these are estimates
        findings = [dataclasses.replace(f, severity="warning") if f.severity == "error" else f for f in findings]
    if t.method == "images" and t.residual > EXACT_FIT:
        severity = "warning" if t.residual < CLOSE_FIT else "error"
        message = (
            "after undoing the mistakes above, the blob still differs from the stated preprocessing's by "
            f"{100 * t.residual:.1f}% (relative RMS)"
        )
        if t.residual < CLOSE_FIT:
            message += (
                "; typical of another resize (OpenCV INTER_LINEAR vs DIGITS's PIL bilinear, which antialiases), "
                "JPEG decoder or crop"
            )
            fix = "resize with Pillow's Image.resize(size, Image.BILINEAR), or let `decode` preprocess the files"
        else:
            message += "; are the blobs in the same order as the images?"
            fix = "feed the blobs in the order of the images, made from the same files"
        findings.append(Finding("pixel-mismatch", severity, message, fix, {"residual": round(t.residual, 5)}))
    return findings


def _scale_findings(
    t: BlobTransform, spec: PreprocessSpec, blob: np.ndarray, reference: np.ndarray | None, first_layer: str, hedge: str
) -> list[Finding]:
    factor = abs(t.a) / spec.scale
    if abs(factor - 1) <= TOLERANCE / 5:
        return []
    expected_range = (
        describe_range(reference) if reference is not None else "0..255 pixels minus the mean" + _times(spec.scale)
    )
    expected = "unscaled pixels" if spec.scale == 1.0 else f"pixels x {_scale_text(spec.scale)}"
    message = (
        f"the blob is on the wrong scale{hedge}: it spans {describe_range(blob)} where the model's preprocessing gives "
        f"{expected_range}; it holds pixels x {_scale_text(abs(t.a))}{_scale_name(abs(t.a))}, the network "
        f"expects {expected}{source_phrase(spec, 'scale')}"
    )
    if first_layer in ("Power", "Scale") and factor < 1:
        message += f" (it scales its input itself: its first layer is a {first_layer} layer)"
    fix = "feed 0..255 pixel values" + _times(spec.scale)
    if abs(abs(t.a) - 1 / 255) < 1e-6:
        fix += ", not [0,1] floats (pycaffe: set_raw_scale('data', 255))"
    severity = "error" if factor < 0.5 or factor > 2 else "warning"
    return [Finding("input-range", severity, message, fix, {"scale": abs(t.a), "expected_scale": spec.scale})]


def _times(scale: float) -> str:
    return f", times {scale:g}" if scale != 1.0 else ""


def _scale_text(a: float) -> str:
    """1/255 rather than 0.00392157 when the scale is the inverse of a round number."""
    inverse = 1.0 / a
    if inverse > 1.5 and abs(inverse - round(inverse * 2) / 2) <= 1e-6 * inverse:
        return f"1/{round(inverse * 2) / 2:g}"
    return f"{a:.6g}"


def _scale_name(a: float) -> str:
    return " ([0,1] floats, as caffe.io.load_image gives)" if abs(a - 1 / 255) <= 1e-6 / 255 else ""


def subtracted_mean(t: BlobTransform, spec: PreprocessSpec) -> np.ndarray:
    """The mean the user's blob has removed from the pixels, in pixel units, (C, H, W)."""
    shape = (spec.channels, spec.height, spec.width)
    subtracted = -(t.c * mean_of(spec, t.mean_kind) + t.b) / abs(t.a)
    if t.inverted:
        # U = a*Q + c*M + b with a < 0: the mean the user removed from the (inverted) pixels.
        subtracted = (t.c * mean_of(spec, t.mean_kind) + t.b + 255.0 * t.a) / t.a
    return np.broadcast_to(subtracted, shape)


def mean_departs(t: BlobTransform, spec: PreprocessSpec) -> bool:
    """Does the user's subtracted mean differ from the stated one (what ``mean-*`` findings report)?"""
    expected = np.broadcast_to(mean_of(spec, spec.mean_kind), (spec.channels, spec.height, spec.width))
    scale = max(float(np.sqrt(np.mean(expected**2))), 1.0)
    return float(np.sqrt(np.mean((subtracted_mean(t, spec) - expected) ** 2))) > TOLERANCE * scale


def scale_departs(t: BlobTransform, spec: PreprocessSpec) -> bool:
    """Is the user's blob on another scale than the stated one (what ``input-range`` reports)?"""
    return abs(abs(t.a) / spec.scale - 1) > TOLERANCE / 5


def _mean_findings(t: BlobTransform, spec: PreprocessSpec, hedge: str) -> list[Finding]:
    """Compare the mean the user subtracted (in pixel units) with the training mean."""
    expected = np.broadcast_to(mean_of(spec, spec.mean_kind), (spec.channels, spec.height, spec.width))
    subtracted = subtracted_mean(t, spec)
    scale = max(float(np.sqrt(np.mean(expected**2))), 1.0)
    user_level, expected_level = float(np.mean(subtracted)), float(np.mean(expected))
    error = float(np.sqrt(np.mean((subtracted - expected) ** 2)))
    user_size = float(np.sqrt(np.mean(subtracted**2)))
    evidence = {
        "expected_mean_kind": spec.mean_kind,
        "expected_mean_level": round(expected_level, 3),
        "subtracted_mean_level": round(user_level, 3),
        "fitted_mean_kind": t.mean_kind,
    }
    if spec.mean_kind != "none" and user_size <= TOLERANCE * scale:
        what = "mean image (mean.binaryproto)" if spec.mean_kind == "image" else "mean pixel"
        message = (
            f"no mean is subtracted{hedge}, but the model's metadata says pixels minus the {what}"
            f"{source_phrase(spec, 'mean')}, whose average is {expected_level:.1f}: every input is shifted by that much"
        )
        fix = f"subtract the {what} from the 0..255 pixels (pycaffe: set_mean('data', mean))"
        return [Finding("mean-missing", "error", message, fix, evidence)]
    if error <= TOLERANCE * scale:
        return []
    if spec.mean_kind == "none":
        message = (
            f"a mean averaging {user_level:.1f} is subtracted{hedge}, but the model's metadata says none"
            f"{source_phrase(spec, 'mean')}"
        )
        fix = "do not subtract a mean"
        severity = "error" if abs(user_level) > 10 else "warning"
        return [Finding("mean-wrong", severity, message, fix, evidence)]
    detail = _mean_difference(subtracted, expected, spec)
    message = f"the wrong mean is subtracted{hedge}: {detail}; RMS difference {error:.1f} levels"
    fix = "subtract the training mean from the 0..255 pixels, before any scaling"
    severity = "error" if error > 0.25 * scale else "warning"
    return [Finding("mean-wrong", severity, message, fix, {**evidence, "rms_difference": round(error, 3)})]


def _mean_difference(subtracted: np.ndarray, expected: np.ndarray, spec: PreprocessSpec) -> str:
    """Name the way the subtracted mean differs from the training mean, in words."""
    per_channel = subtracted.reshape(subtracted.shape[0], -1)
    flat = bool(np.all(per_channel.std(axis=1) < 0.5))
    levels = ", ".join(f"{v:.1f}" for v in per_channel.mean(axis=1))
    pixel_mean = expected.reshape(expected.shape[0], -1).mean(axis=1)
    ratio = float(np.sum(subtracted * expected) / max(float(np.sum(expected * expected)), 1e-12))
    scale = max(float(np.sqrt(np.mean(expected**2))), 1.0)
    proportional = float(np.sqrt(np.mean((subtracted - ratio * expected) ** 2))) <= TOLERANCE * scale * max(ratio, 1)
    if proportional and abs(ratio - 1) > TOLERANCE:
        return f"the right mean on the wrong scale (x{ratio:.4g}: subtracted after the pixels were scaled, or before)"
    if flat and spec.mean_kind == "image":
        if np.allclose(per_channel.mean(axis=1), pixel_mean, atol=1.0):
            return f"the mean PIXEL ({levels}) instead of the mean IMAGE"
        return f"a constant ({levels}) instead of the mean image (average {float(np.mean(expected)):.1f})"
    if not flat and spec.mean_kind == "pixel":
        return "a mean IMAGE instead of the mean PIXEL"
    user, training = float(np.mean(subtracted)), float(np.mean(expected))
    return f"a mean averaging {user:.1f} instead of the training mean ({training:.1f})"


def pixel_findings(check: PixelCheck | None, origin: str) -> list[Finding]:
    """``polarity`` (and, for reconstructed pixels, ``channel-order``) from the pixel/mean comparison."""
    if check is None:
        return []
    findings: list[Finding] = []
    evidence = {
        "batch_level": round(check.batch_level, 2),
        "mean_level": round(check.mean_level, 2),
        "correlation_with_mean": None if np.isnan(check.correlation) else round(check.correlation, 3),
        "source": origin,
    }
    if check.inverted:
        corr = "" if np.isnan(check.correlation) else f", correlation with the mean image {check.correlation:.2f}"
        message = (
            f"the {origin} are inverted relative to the training data: their average pixel is {check.batch_level:.0f} "
            f"while the training mean's is {check.mean_level:.0f} (255 - {check.batch_level:.0f} = "
            f"{255 - check.batch_level:.0f}){corr}; e.g. raw MNIST is white on black, DIGITS's MNIST dark on white"
        )
        fix = "invert the pixels before preprocessing: pixel = 255 - pixel (PIL: ImageOps.invert)"
        findings.append(Finding("polarity", "error", message, fix, evidence))
    if check.swapped:
        levels = ", ".join(f"{v:.0f}" for v in check.channel_levels)
        means = ", ".join(f"{v:.0f}" for v in check.mean_channel_levels)
        message = (
            f"the channels look reversed: the {origin}' channel averages ({levels}) match the training mean's "
            f"({means}, network order) far better when reversed"
        )
        fix = "reverse the channel axis (RGB <-> BGR): x = x[::-1] for (C, H, W)"
        findings.append(Finding("channel-order", "warning", message, fix, evidence))
    return findings
