"""Which transformation turns DIGITS's blob into the user's blob?

Every mistake of FACTS.md section 5 is an operation on the network-order pixels ``Q``
(see :mod:`decoder.diagnosis.pixels`): the user's blob is modelled as

    U = a * L(S(Q)) + c * M + b

with ``S`` an optional channel reversal, ``L`` a layout change (HWC memory read as CHW,
or H and W swapped), ``M`` the training mean (image or pixel) and ``a``, ``c``, ``b``
scalars; ``a < 0`` is inversion (``255 - Q`` is affine in ``Q``). DIGITS itself is
``a = scale, c = -scale, b = 0`` with no ``S`` or ``L``.

With the user's images we know ``Q`` and fit ``a, c, b`` by least squares for every
discrete choice, keeping the best. With the blob alone we look for the ``a`` and mean
that make ``(U - c*M - b) / a`` whole numbers in 0..255 (uint8 pixels leave that
fingerprint unless the user resampled floats), falling back to the value range.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from decoder.diagnosis.pixels import mean_field
from decoder.spec import PreprocessSpec

Layout = str  # "chw" | "hwc-reshaped" | "transposed"

#: Relative residual below which a fit explains the blob exactly (float rounding only).
EXACT_FIT = 1e-3
#: Below this the fit explains it up to resampling-sized differences.
CLOSE_FIT = 0.15
#: Most elements used for a least-squares fit (a fixed random subset beyond that).
FIT_SAMPLE = 100_000

# Scales users apply to 0..255 pixels, and offsets that go with them (value: description).
_COMMON_SCALES = (1.0, 1 / 255, 1 / 256, 2 / 255, 1 / 127.5, 1 / 128, 0.0125, 1 / 80, 0.00390625, 1 / 64)
_COMMON_BIASES = (0.0, -1.0, -0.5, -127.5, -128.0)


@dataclass(frozen=True)
class BlobTransform:
    """The user's blob in terms of DIGITS's pixels (module docstring), with ``D = L o S``:

    ``U = a*D(Q) + c*M + b``, or with ``rearranged_last`` ``U = D(a*Q + c*M) + b`` (the
    channels or layout of the finished, mean-subtracted blob were mixed up).
    ``mean_kind`` names the ``M`` in the fit: "image", "pixel" or "none" (then ``c`` is 0).
    ``residual`` is ``|U - fit| / |U - mean(U)|``; ``method`` is "images" (fitted against
    DIGITS's own pixels), "quantized" or "range" (inferred from the blob alone).
    """

    a: float
    c: float
    b: float
    mean_kind: str
    swapped: bool
    layout: Layout
    residual: float
    method: str
    rearranged_last: bool = False

    @property
    def inverted(self) -> bool:
        return self.a < 0

    @property
    def rearranged(self) -> bool:
        return self.swapped or self.layout != "chw"

    def to_dict(self) -> dict[str, object]:
        return {
            "scale": self.a,
            "mean_coefficient": self.c,
            "offset": self.b,
            "mean_kind": self.mean_kind,
            "inverted": self.inverted,
            "channels_reversed": self.swapped,
            "layout": self.layout,
            "rearranged_after_mean": self.rearranged_last,
            "residual": None if math.isnan(self.residual) else self.residual,
            "method": self.method,
        }

    def rearrange(self, x: np.ndarray) -> np.ndarray:
        """``D``: channel reversal, then the layout change."""
        return apply_layout(x[:, ::-1] if self.swapped else x, self.layout)

    def unrearrange(self, x: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`rearrange`."""
        x = undo_layout(x, self.layout)
        return x[:, ::-1] if self.swapped else x

    def apply(self, pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
        """The user's blob for network-order pixels ``Q`` (N, C, H, W): the forward model."""
        mean = self.c * mean_of(spec, self.mean_kind)
        if self.rearranged_last:
            out = self.rearrange(np.broadcast_to(self.a * pixels + mean, pixels.shape)) + self.b
        else:
            out = self.a * self.rearrange(pixels) + mean + self.b
        return np.ascontiguousarray(out, dtype=np.float32)

    def pixels_from(self, blob: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
        """The network-order pixels ``Q`` the user's blob was made from (the inverse)."""
        mean = self.c * mean_of(spec, self.mean_kind)
        if self.rearranged_last:
            q = (self.unrearrange(blob - self.b) - mean) / self.a
        else:
            q = self.unrearrange((blob - mean - self.b) / self.a)
        return np.ascontiguousarray(q, dtype=np.float32)


def mean_of(spec: PreprocessSpec, kind: str) -> np.ndarray:
    """The mean term ``M`` of a fit, broadcastable to (C, H, W)."""
    if kind == "none" or spec.mean is None:
        return np.zeros((spec.channels, 1, 1), np.float32)
    field = mean_field(spec)
    if kind == "pixel":
        return field.mean(axis=(1, 2), keepdims=True).astype(np.float32)
    return np.broadcast_to(field, (spec.channels, spec.height, spec.width)).astype(np.float32)


def apply_layout(q: np.ndarray, layout: Layout) -> np.ndarray:
    """``L``: how a layout mistake rearranges a correct (N, C, H, W) batch."""
    n, c, h, w = q.shape
    if layout == "hwc-reshaped":
        return np.ascontiguousarray(q.transpose(0, 2, 3, 1)).reshape(n, c, h, w)
    if layout == "transposed":
        return q.transpose(0, 1, 3, 2)
    return q


def undo_layout(q: np.ndarray, layout: Layout) -> np.ndarray:
    """The inverse of :func:`apply_layout`."""
    n, c, h, w = q.shape
    if layout == "hwc-reshaped":
        return np.ascontiguousarray(q).reshape(n, h, w, c).transpose(0, 3, 1, 2)
    if layout == "transposed":
        return q.transpose(0, 1, 3, 2)
    return q


def layouts_for(spec: PreprocessSpec) -> tuple[Layout, ...]:
    """The layouts worth trying: HWC-as-CHW needs several channels, H/W swaps a square input."""
    options = ["chw"]
    if spec.channels > 1:
        options.append("hwc-reshaped")
    if spec.height == spec.width:
        options.append("transposed")
    return tuple(options)


def mean_kinds_for(spec: PreprocessSpec) -> tuple[str, ...]:
    if spec.mean is None:
        return ("none",)
    return ("none", "pixel", "image") if spec.mean.ndim == 3 else ("none", "pixel")


# --------------------------------------------------------------------------- with images


def fit_with_pixels(blob: np.ndarray, pixels: np.ndarray, spec: PreprocessSpec) -> BlobTransform | None:
    """The best ``BlobTransform`` from DIGITS's pixels of the same images to the user's blob.

    Tries every channel order x layout x mean term (x rearranged before or after the mean)
    and solves for ``a, c, b`` by least squares on (a fixed subset of) the elements; the
    simplest candidate whose residual is within a hair of the best wins, so an exact
    DIGITS blob is reported as exactly that. None when the pixels are flat (no signal).
    """
    if float(pixels.std()) < 1e-6:
        return None
    index = _sample_index(blob.size)
    target = blob.reshape(-1)[index].astype(np.float64)
    spread = float(np.linalg.norm(target - target.mean())) or float(np.linalg.norm(target)) or 1.0
    candidates: list[tuple[float, int, BlobTransform]] = []
    swaps = (False, True) if spec.channels == 3 else (False,)
    for swapped, layout, kind in itertools.product(swaps, layouts_for(spec), mean_kinds_for(spec)):
        probe = BlobTransform(1.0, 0.0, 0.0, kind, swapped, layout, 0.0, "images")
        orders = (False, True) if probe.rearranged and kind != "none" else (False,)
        q = probe.rearrange(pixels).reshape(-1)[index].astype(np.float64)
        for last in orders:
            columns = [q, np.ones_like(q)]
            if kind != "none":
                m = np.broadcast_to(mean_of(spec, kind), pixels.shape[1:])[np.newaxis]
                m = probe.rearrange(m) if last else m
                columns.insert(1, np.broadcast_to(m, pixels.shape).reshape(-1)[index].astype(np.float64))
            design = np.stack(columns, axis=1)
            # Normal equations: a 2x2 or 3x3 system instead of an SVD of the tall design (10x faster).
            gram = design.T @ design
            solution, *_ = np.linalg.lstsq(gram, design.T @ target, rcond=None)
            residual = float(np.linalg.norm(design @ solution - target)) / spread
            a, b = float(solution[0]), float(solution[-1])
            c = float(solution[1]) if kind != "none" else 0.0
            if abs(a) < 1e-12:
                continue
            complexity = int(swapped) + int(layout != "chw") + ("none", "pixel", "image").index(kind) + int(last)
            found = BlobTransform(a, c, b, kind, swapped, layout, residual, "images", last)
            candidates.append((residual, complexity, found))
    if not candidates:
        return None
    best = min(r for r, _, _ in candidates)
    good_enough = [(k, t) for r, k, t in candidates if r <= best * 1.5 + 1e-4]
    _, chosen = min(good_enough, key=lambda item: item[0])
    return _tidy(chosen, spec)


def _sample_index(size: int) -> np.ndarray:
    if size <= FIT_SAMPLE:
        return np.arange(size)
    return np.sort(np.random.default_rng(0).choice(size, FIT_SAMPLE, replace=False))


def _tidy(t: BlobTransform, spec: PreprocessSpec) -> BlobTransform:
    """Snap the fitted numbers to the round values users type (1/255, 0, -a) when they fit."""
    a = _snap(t.a, [s for s in _COMMON_SCALES] + [spec.scale, -spec.scale] + [-s for s in _COMMON_SCALES])
    c = _snap(t.c, [0.0, -a, -1.0, -abs(a)]) if t.mean_kind != "none" else 0.0
    b = _snap(t.b, [0.0, 255.0 * abs(a), -1.0, -0.5, 1.0])
    return replace(t, a=a, c=c, b=b)


def _snap(value: float, targets: list[float], tolerance: float = 1e-3) -> float:
    for target in targets:
        if abs(value - target) <= tolerance * max(abs(target), 1e-3):
            return float(target)
    return value


# --------------------------------------------------------------------------- blob alone


def infer_from_blob(blob: np.ndarray, spec: PreprocessSpec) -> BlobTransform:
    """Guess the transform from the user's blob only (no images): layout, then scale and mean.

    HWC-read-as-CHW shows in the picture's smoothness (:func:`guess_layout`); the mean may
    have been subtracted before or after the mix-up, so both are tried. H/W swaps of a
    square input show only when the mean image is asymmetric: then only the right reading
    turns ``blob + mean`` back into whole pixels. "range" results are estimates.
    """
    layout = guess_layout(blob, spec)
    attempts: list[tuple[Layout, bool]] = [(layout, True)] if layout != "chw" else []
    attempts.append((layout, False))
    if layout == "chw" and _asymmetric_mean(spec):
        attempts.append(("transposed", True))
    for candidate, last in attempts:
        found = _quantized_fit(undo_layout(blob, candidate) if last else blob, spec)
        if found is not None:
            return replace(found, layout=candidate, rearranged_last=last and candidate != "chw")
    found = _range_fit(undo_layout(blob, layout), spec)
    return replace(found, layout=layout, rearranged_last=layout != "chw")


def _asymmetric_mean(spec: PreprocessSpec) -> bool:
    """A square mean image that differs from its own transpose (so H/W swaps can be told)."""
    if spec.mean is None or spec.mean.ndim != 3 or spec.height != spec.width:
        return False
    detail = spec.mean - spec.mean.mean(axis=(1, 2), keepdims=True)
    size = float(np.linalg.norm(detail))
    if size / np.sqrt(detail.size) < 5.0:
        return False
    return float(np.linalg.norm(spec.mean - spec.mean.transpose(0, 2, 1))) / size > 0.4


def guess_layout(blob: np.ndarray, spec: PreprocessSpec) -> Layout:
    """HWC memory read as CHW breaks the picture's vertical continuity; the right reading restores it.

    Rows of an image are smooth top to bottom. In HWC data reshaped as (C, H, W), the
    element "below" another is W/C pixels further along the same row block, so vertical
    differences are as large as differences between unrelated pixels.
    """
    if spec.channels < 2 or blob.shape[0] == 0:
        return "chw"
    as_given = _vertical_roughness(blob)
    reread = _vertical_roughness(undo_layout(blob, "hwc-reshaped"))
    return "hwc-reshaped" if reread < 0.6 * as_given else "chw"


def _vertical_roughness(blob: np.ndarray) -> float:
    x = blob.astype(np.float64)
    spread = float(np.abs(x - x.mean(axis=(2, 3), keepdims=True)).mean()) or 1.0
    return float(np.abs(np.diff(x, axis=2)).mean()) / spread


def _quantized_fit(blob: np.ndarray, spec: PreprocessSpec) -> BlobTransform | None:
    """The (a, mean, b) that turn the blob back into whole numbers 0..255, if any does."""
    stride = max(1, blob[0].size // 1024)
    sample = blob[:64].reshape(min(len(blob), 64), -1)[:, ::stride].astype(np.float64)
    best: tuple[float, BlobTransform] | None = None
    for a, c_factor, kind, b in _quantized_candidates(spec, _estimated_scales(blob, spec)):
        c = -a if c_factor == "a" else float(c_factor)
        m = np.broadcast_to(mean_of(spec, kind), blob.shape[1:]).reshape(-1)[::stride]
        q = (sample - c * m - b) / a
        whole = np.abs(q - np.round(q)) <= 2e-3 * np.maximum(1.0, np.abs(q) / 64)
        inside = (q >= -0.5) & (q <= 255.5)
        score = float(np.mean(whole & inside))
        # Real pictures span more than a few levels; this rules out e.g. [0,1] data read as 0..255.
        if score >= 0.98 and float(q.max() - q.min()) >= 32 and (best is None or score > best[0] + 1e-3):
            best = (score, BlobTransform(a, c, b, kind, False, "chw", float("nan"), "quantized"))
    return None if best is None else best[1]


def _estimated_scales(blob: np.ndarray, spec: PreprocessSpec) -> list[float]:
    """Scales read off the data, for batches that reach both pixel extremes 0 and 255.

    Without a mean: the extent over 255. With the mean subtracted at the same scale
    (``U = a*(Q - M)``): the smallest ``a`` that keeps every ``Q = U/a + M`` in 0..255.
    """
    estimates = []
    low, high = float(blob.min()), float(blob.max())
    if high > low:
        estimates.append((high - low) / 255.0)
    if spec.mean is not None:
        m = np.broadcast_to(mean_of(spec, "image" if spec.mean.ndim == 3 else "pixel"), blob.shape[1:])
        m = np.broadcast_to(m, blob.shape)
        up = (blob > 0) & (255.0 - m > 8)
        down = (blob < 0) & (m > 8)
        bounds = [float(np.max(blob[up] / (255.0 - m[up]))) if up.any() else 0.0]
        bounds.append(float(np.max(-blob[down] / m[down])) if down.any() else 0.0)
        if max(bounds) > 0:
            estimates.append(max(bounds))
    return [_snap(a, [*_COMMON_SCALES, 255.0, 256.0, 127.5, 128.0], tolerance=0.01) for a in estimates]


def _quantized_candidates(spec: PreprocessSpec, estimates: list[float]) -> list[tuple[float, float | str, str, float]]:
    """(a, c or "a" for c = -a, mean kind, b): the pipelines users write, most common first."""
    scales = list(dict.fromkeys([spec.scale, *_COMMON_SCALES, spec.scale / 255, 255.0, *estimates]))
    out: list[tuple[float, float | str, str, float]] = []
    for a in scales:
        for kind in mean_kinds_for(spec):
            if kind == "none":
                out.extend((a, 0.0, "none", b) for b in {0.0, *(x for x in _COMMON_BIASES if x != 0.0)})
                out.extend((a, 0.0, "none", b * a) for b in (-127.5, -128.0))
            else:
                out.append((a, "a", kind, 0.0))  # mean subtracted before scaling (right)
                if a != 1.0:
                    out.append((a, -1.0, kind, 0.0))  # mean (0..255) subtracted after scaling
    return out


def _range_fit(blob: np.ndarray, spec: PreprocessSpec) -> BlobTransform:
    """Last resort: assume the batch spans the pixel range and read the scale off its extent."""
    low, high = float(blob.min()), float(blob.max())
    if low >= 0:
        a = high / 255.0 if high > 0 else 1.0
        a = _snap(a, list(_COMMON_SCALES), tolerance=0.1)
        return BlobTransform(a, 0.0, 0.0, "none", False, "chw", float("nan"), "range")
    best: tuple[float, BlobTransform] | None = None
    for kind in mean_kinds_for(spec):
        m = np.broadcast_to(mean_of(spec, kind), blob.shape[1:])
        for a in dict.fromkeys([spec.scale, *_COMMON_SCALES, 255.0, *_estimated_scales(blob, spec)]):
            c = -a if kind != "none" else 0.0
            b = 0.0 if kind != "none" else low
            q = (blob - c * m - b) / a
            inside = float(np.mean((q >= -2) & (q <= 257)))
            coverage = min(float(q.max()) - float(q.min()), 255.0) / 255.0
            score = inside * coverage
            if best is None or score > best[0] + 1e-3:
                best = (score, BlobTransform(a, c, b, kind, False, "chw", float("nan"), "range"))
    assert best is not None
    return best[1]
